// `lra attend`: run one attention backend on the user's own tensors (.npy), forward and
// optionally backward, so results can be compared with another implementation.
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <string>

#include "attention/attention.h"
#include "core/npy.h"
#include "harness/commands.h"

namespace lra::harness {
namespace {

const char* usage_text =
    "usage: lra attend --backend NAME [--set key=value ...] --q Q.npy --k K.npy --v V.npy\n"
    "                  [--mask MASK.npy] --out OUT.npy [--seed S] [--param NAME=FILE.npy ...]\n"
    "                  [--grad-out G.npy --grads-prefix PREFIX]\n\n"
    "Runs attention backend NAME (see `lra list`) on q, k, v of shape [B, H, N, D]\n"
    "(little-endian float32 or float64 .npy, C order) with an optional key mask [B, N]\n"
    "(1 = token, 0 = padding) and writes the output [B, H, N, D] to OUT.npy. The dtype of\n"
    "the computation follows the inputs.\n\n"
    "  --set key=value    backend parameter (e.g. --set landmarks=32), YAML value syntax\n"
    "  --seed S           seed of the backend's parameters and randomness (default 0)\n"
    "  --param NAME=FILE  load a backend parameter (e.g. linformer_e=E.npy) instead of its\n"
    "                     seeded initial value; the shape must match\n"
    "  --grad-out G.npy   gradient of the loss w.r.t. the output: also runs the backward and\n"
    "                     writes PREFIXq.npy, PREFIXk.npy, PREFIXv.npy and one\n"
    "                     PREFIX<parameter>.npy per backend parameter";

int run_attend(const std::vector<std::string>& args) {
  ParsedArgs a = parse_args("attend", args,
                            {"--backend", "--set", "--q", "--k", "--v", "--mask", "--out",
                             "--grad-out", "--grads-prefix", "--seed", "--param"},
                            {}, 0);
  YAML::Node spec(YAML::NodeType::Map);
  spec["type"] = a.require("--backend");
  for (const auto& kv : a.all("--set")) {
    auto eq = kv.find('=');
    LRA_CHECK(eq != std::string::npos && eq > 0, "lra attend: --set expects key=value, got '{}'", kv);
    spec[kv.substr(0, eq)] = YAML::Load(kv.substr(eq + 1));
  }
  core::Tensor q = core::read_npy(a.require("--q"));
  core::Tensor k = core::read_npy(a.require("--k"));
  core::Tensor v = core::read_npy(a.require("--v"));
  std::string out_path = a.require("--out");
  LRA_CHECK(q.rank() == 4, "{}: q must have shape [B, H, N, D], got {}", a.get("--q"), q.shape_str());
  LRA_CHECK(k.shape() == q.shape() && k.dtype() == q.dtype(),
            "{}: k has shape {} ({}) but q has {} ({})", a.get("--k"), k.shape_str(),
            core::dtype_name(k.dtype()), q.shape_str(), core::dtype_name(q.dtype()));
  LRA_CHECK(v.shape() == q.shape() && v.dtype() == q.dtype(),
            "{}: v has shape {} ({}) but q has {} ({})", a.get("--v"), v.shape_str(),
            core::dtype_name(v.dtype()), q.shape_str(), core::dtype_name(q.dtype()));
  core::Tensor mask;
  if (a.has("--mask")) {
    mask = core::read_npy(a.get("--mask"));
    LRA_CHECK(mask.rank() == 2 && mask.dim(0) == q.dim(0) && mask.dim(1) == q.dim(2),
              "{}: mask must have shape [B, N] = [{}, {}], got {}", a.get("--mask"), q.dim(0),
              q.dim(2), mask.shape_str());
    for (double x : mask.to_vector())
      LRA_CHECK(x == 0.0 || x == 1.0, "{}: mask values must be 0 or 1, found {}", a.get("--mask"), x);
  }
  std::string seed_text = a.get("--seed", "0");
  uint64_t seed = 0;
  try {
    std::size_t used = 0;
    seed = std::stoull(seed_text, &used);
    LRA_CHECK(used == seed_text.size(), "");
  } catch (const std::exception&) {
    fail("lra attend: --seed must be a non-negative integer, got '{}'", seed_text);
  }

  attention::AttentionOptions options;
  options.seed = seed;
  options.dtype = q.dtype();
  attention::AttnShape shape{q.dim(0), q.dim(1), q.dim(2), q.dim(3)};
  auto attn = attention::make_attention(spec, shape, options, "lra attend --backend/--set");
  auto params = attn->parameters();
  for (const auto& item : a.all("--param")) {
    auto eq = item.find('=');
    LRA_CHECK(eq != std::string::npos && eq > 0, "lra attend: --param expects NAME=FILE.npy, got '{}'", item);
    std::string name = item.substr(0, eq), file = item.substr(eq + 1);
    core::Parameter* target = nullptr;
    std::string known;
    for (auto* p : params) {
      if (p->name == name) target = p;
      known += (known.empty() ? "" : ", ") + p->name;
    }
    LRA_CHECK(target, "lra attend: backend '{}' has no parameter '{}' (it has: {})", attn->name(), name,
              known.empty() ? "none" : known);
    core::Tensor value = core::read_npy(file);
    LRA_CHECK(value.shape() == target->value.shape(), "{}: parameter {} must have shape {}, got {}", file,
              name, target->value.shape_str(), value.shape_str());
    target->value.copy_from(value);
  }

  attention::Context saved;
  core::Tensor out;
  attn->forward(q, k, v, mask, out, saved);
  core::write_npy(out_path, out);
  std::fprintf(stderr, "lra attend: %s %s -> %s\n", std::string(attn->name()).c_str(),
               q.shape_str().c_str(), out_path.c_str());

  if (a.has("--grad-out")) {
    std::string prefix = a.require("--grads-prefix");
    core::Tensor d_out = core::read_npy(a.get("--grad-out"));
    LRA_CHECK(d_out.shape() == q.shape() && d_out.dtype() == q.dtype(),
              "{}: gradient must have the output's shape {} and dtype {}, got {} ({})",
              a.get("--grad-out"), q.shape_str(), core::dtype_name(q.dtype()), d_out.shape_str(),
              core::dtype_name(d_out.dtype()));
    for (auto* p : params) p->zero_grad();
    core::Tensor d_q, d_k, d_v;
    attn->backward(d_out, saved, d_q, d_k, d_v);
    core::write_npy(prefix + "q.npy", d_q);
    core::write_npy(prefix + "k.npy", d_k);
    core::write_npy(prefix + "v.npy", d_v);
    for (auto* p : params) core::write_npy(prefix + p->name + ".npy", p->grad);
    std::fprintf(stderr, "lra attend: gradients -> %sq.npy, %sk.npy, %sv.npy%s\n", prefix.c_str(),
                 prefix.c_str(), prefix.c_str(), params.empty() ? "" : " and parameter gradients");
  } else {
    LRA_CHECK(!a.has("--grads-prefix"), "lra attend: --grads-prefix needs --grad-out");
  }
  return 0;
}

}  // namespace

LRA_REGISTER_COMMAND(Command{"attend", "run one attention backend on .npy tensors (forward/backward)",
                             usage_text, run_attend});

}  // namespace lra::harness
