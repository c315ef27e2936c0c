// `lra approx CONFIG`: approximation error of attention backends against exact softmax
// attention on the same inputs, one CSV row per (backend, params, N, seed).
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cmath>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "attention/attention.h"
#include "core/csv.h"
#include "core/npy.h"
#include "core/ops.h"
#include "core/rng.h"
#include "core/version.h"
#include "harness/commands.h"

namespace lra::harness {
namespace {

const char* usage_text =
    "usage: lra approx CONFIG [--out FILE.csv]\n\n"
    "For every backend spec and sequence length N in CONFIG and every seed: runs the backend\n"
    "and exact softmax attention on the same q, k, v and writes the relative Frobenius error\n"
    "of the output (error_rel_fro) and, where the backend's output is a matrix times V that\n"
    "can be probed (softmax, linear, linformer, performer, nystrom with conv_kernel: 0) and\n"
    "N <= attention_matrix_max_seq, of the N x N attention matrix (attn_error_rel_fro).\n"
    "Rows already in the CSV are skipped (resume). Default --out: results/approx/<config>.csv\n\n"
    "CONFIG keys:\n"
    "  backends: [ {type: nystrom, landmarks: 64, conv_kernel: 0}, ... ]   (required)\n"
    "  seq_len: [512, 1024]    batch: 1    heads: 2    head_dim: 32    dtype: f32|f64\n"
    "  seeds: 3 (= 0, 1, 2) or [0, 5, 9]\n"
    "  input: {type: gaussian, scale: 1.0} | {type: npy, q: q.npy, k: k.npy, v: v.npy}\n"
    "         (npy: [B, H, N, D] files; seq_len entries <= N use the first positions)\n"
    "  attention_matrix_max_seq: 1024";

struct Config {
  std::vector<YAML::Node> backends;
  std::vector<int64_t> seq_lens;
  int64_t batch = 1, heads = 2, head_dim = 32;
  std::vector<uint64_t> seeds{0, 1, 2};
  std::string input_type = "gaussian";
  double scale = 1.0;
  std::string q_path, k_path, v_path;
  core::DType dtype = core::DType::f32;
  int64_t attn_max_seq = 1024;
};

template <typename T> T scalar(const YAML::Node& n, const std::string& file, const std::string& key) {
  try {
    return n.as<T>();
  } catch (const YAML::Exception&) {
    fail("{}: key '{}' has a value of the wrong type", file, key);
  }
}

Config load_config(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    fail("{}: cannot read YAML: {}", path, e.what());
  }
  LRA_CHECK(root.IsMap(), "{}: the config must be a mapping", path);
  static const std::set<std::string> known{"backends", "seq_len", "batch", "heads", "head_dim", "seeds",
                                           "input", "dtype", "attention_matrix_max_seq"};
  for (const auto& kv : root) {
    std::string key = kv.first.as<std::string>();
    LRA_CHECK(known.count(key), "{}: unknown key '{}' (known: backends, seq_len, batch, heads, head_dim, "
              "seeds, input, dtype, attention_matrix_max_seq)", path, key);
  }
  Config c;
  LRA_CHECK(root["backends"] && root["backends"].IsSequence() && root["backends"].size() > 0,
            "{}: 'backends' must be a non-empty list of attention specs", path);
  for (const auto& b : root["backends"]) {
    LRA_CHECK(b.IsMap() && b["type"], "{}: every entry of 'backends' needs a 'type'", path);
    c.backends.push_back(b);
  }
  if (root["batch"]) c.batch = scalar<int64_t>(root["batch"], path, "batch");
  if (root["heads"]) c.heads = scalar<int64_t>(root["heads"], path, "heads");
  if (root["head_dim"]) c.head_dim = scalar<int64_t>(root["head_dim"], path, "head_dim");
  LRA_CHECK(c.batch >= 1 && c.heads >= 1 && c.head_dim >= 1, "{}: batch, heads and head_dim must be >= 1", path);
  if (root["attention_matrix_max_seq"])
    c.attn_max_seq = scalar<int64_t>(root["attention_matrix_max_seq"], path, "attention_matrix_max_seq");
  if (root["dtype"]) {
    c.dtype = core::parse_dtype(scalar<std::string>(root["dtype"], path, "dtype"));
    LRA_CHECK(c.dtype != core::DType::bf16, "{}: key 'dtype': approx compares in f32 or f64, not bf16",
              path);
  }
  if (root["seq_len"]) {
    const YAML::Node& s = root["seq_len"];
    if (s.IsSequence())
      for (const auto& n : s) c.seq_lens.push_back(scalar<int64_t>(n, path, "seq_len"));
    else
      c.seq_lens.push_back(scalar<int64_t>(s, path, "seq_len"));
    for (int64_t n : c.seq_lens) LRA_CHECK(n >= 1, "{}: seq_len entries must be >= 1, got {}", path, n);
  }
  if (root["seeds"]) {
    const YAML::Node& s = root["seeds"];
    c.seeds.clear();
    if (s.IsSequence()) {
      for (const auto& n : s) c.seeds.push_back(scalar<uint64_t>(n, path, "seeds"));
    } else {
      int64_t count = scalar<int64_t>(s, path, "seeds");
      LRA_CHECK(count >= 1, "{}: seeds must be a count >= 1 or a list, got {}", path, count);
      for (int64_t i = 0; i < count; ++i) c.seeds.push_back(static_cast<uint64_t>(i));
    }
    LRA_CHECK(!c.seeds.empty(), "{}: seeds is empty", path);
  }
  if (root["input"]) {
    const YAML::Node& in = root["input"];
    LRA_CHECK(in.IsMap() && in["type"], "{}: input must be {{type: gaussian, scale: S}} or {{type: npy, q:, k:, v:}}", path);
    c.input_type = scalar<std::string>(in["type"], path, "input.type");
    std::set<std::string> allowed = c.input_type == "gaussian" ? std::set<std::string>{"type", "scale"}
                                     : c.input_type == "npy"   ? std::set<std::string>{"type", "q", "k", "v"}
                                                               : std::set<std::string>{};
    LRA_CHECK(!allowed.empty(), "{}: input.type must be gaussian or npy, got '{}'", path, c.input_type);
    for (const auto& kv : in) {
      std::string key = kv.first.as<std::string>();
      LRA_CHECK(allowed.count(key), "{}: unknown key 'input.{}' for input type {}", path, key, c.input_type);
    }
    if (c.input_type == "gaussian") {
      if (in["scale"]) c.scale = scalar<double>(in["scale"], path, "input.scale");
      LRA_CHECK(c.scale > 0, "{}: input.scale must be > 0", path);
    } else {
      auto rel = [&](const char* key) {
        LRA_CHECK(in[key], "{}: input of type npy needs key 'input.{}'", path, key);
        std::filesystem::path p = scalar<std::string>(in[key], path, std::string("input.") + key);
        // Relative paths are relative to the config file.
        return p.is_absolute() ? p.string() : (std::filesystem::path(path).parent_path() / p).string();
      };
      c.q_path = rel("q");
      c.k_path = rel("k");
      c.v_path = rel("v");
    }
  }
  if (c.input_type == "gaussian")
    LRA_CHECK(!c.seq_lens.empty(), "{}: 'seq_len' is required with gaussian input", path);
  return c;
}

// First n positions of x ([B, H, N, D]) as a contiguous copy.
core::Tensor prefix(const core::Tensor& x, int64_t n) {
  if (n == x.dim(2)) return x;
  core::Tensor y = core::Tensor::empty(core::Shape{x.dim(0), x.dim(1), n, x.dim(3)}, x.dtype());
  std::size_t el = core::dtype_size(x.dtype());
  auto* dst = static_cast<char*>(y.raw_data());
  const auto* src = static_cast<const char*>(x.raw_data());
  std::size_t row = static_cast<std::size_t>(x.dim(3)) * el;
  for (int64_t bh = 0; bh < x.dim(0) * x.dim(1); ++bh)
    std::memcpy(dst + static_cast<std::size_t>(bh * n) * row, src + static_cast<std::size_t>(bh * x.dim(2)) * row,
                static_cast<std::size_t>(n) * row);
  return y;
}

double rel_fro(const core::Tensor& a, const core::Tensor& ref) {
  std::vector<double> x = a.to_vector(), r = ref.to_vector();
  double num = 0, den = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    num += (x[i] - r[i]) * (x[i] - r[i]);
    den += r[i] * r[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Backends whose output is M(q, k) V with M independent of V: probing with V = columns of
// the identity recovers M. (Nyström's convolution adds a V-only term; Skeinformer's
// sampling depends on V.)
bool probe_allowed(const YAML::Node& spec) {
  std::string type = spec["type"].as<std::string>();
  if (type == "nystrom") return spec["conv_kernel"] && spec["conv_kernel"].as<int64_t>() == 0;
  return type == "softmax" || type == "linear" || type == "linformer" || type == "performer";
}

// The N x N attention matrix [B, H, N, N] of `attn` by probing with identity columns,
// head_dim of them at a time.
core::Tensor probe_matrix(attention::Attention& attn, const core::Tensor& q, const core::Tensor& k,
                          const core::Tensor& mask) {
  int64_t B = q.dim(0), H = q.dim(1), N = q.dim(2), D = q.dim(3);
  core::Tensor m = core::Tensor::zeros(core::Shape{B, H, N, N}, q.dtype());
  std::vector<double> mv(static_cast<std::size_t>(m.numel()), 0.0);
  for (int64_t c0 = 0; c0 < N; c0 += D) {
    core::Tensor v = core::Tensor::zeros(q.shape(), q.dtype());
    std::vector<double> vv(static_cast<std::size_t>(v.numel()), 0.0);
    for (int64_t bh = 0; bh < B * H; ++bh)
      for (int64_t c = c0; c < std::min(N, c0 + D); ++c) vv[static_cast<std::size_t>((bh * N + c) * D + (c - c0))] = 1.0;
    v = core::Tensor::from_values(q.shape(), vv, q.dtype());
    attention::Context ctx;
    core::Tensor out;
    attn.forward(q, k, v, mask, out, ctx);
    std::vector<double> o = out.to_vector();
    for (int64_t bh = 0; bh < B * H; ++bh)
      for (int64_t i = 0; i < N; ++i)
        for (int64_t c = c0; c < std::min(N, c0 + D); ++c)
          mv[static_cast<std::size_t>((bh * N + i) * N + c)] = o[static_cast<std::size_t>((bh * N + i) * D + (c - c0))];
  }
  return core::Tensor::from_values(m.shape(), mv, q.dtype());
}

int run_approx(const std::vector<std::string>& args) {
  ParsedArgs a = parse_args("approx", args, {"--out"}, {}, 1);
  LRA_CHECK(a.positionals.size() == 1, "usage: lra approx CONFIG [--out FILE.csv]");
  std::string config_path = a.positionals[0];
  Config cfg = load_config(config_path);
  std::string out_path = a.get("--out", "results/approx/" + std::filesystem::path(config_path).stem().string() + ".csv");
  if (auto dir = std::filesystem::path(out_path).parent_path(); !dir.empty())
    std::filesystem::create_directories(dir);

  // Validate every backend spec before computing anything.
  for (const auto& spec : cfg.backends)
    attention::make_attention(spec, {1, 1, 8, 4}, {}, config_path + " (backends)");

  core::Tensor file_q, file_k, file_v;
  if (cfg.input_type == "npy") {
    file_q = core::read_npy(cfg.q_path).to(cfg.dtype);
    file_k = core::read_npy(cfg.k_path).to(cfg.dtype);
    file_v = core::read_npy(cfg.v_path).to(cfg.dtype);
    LRA_CHECK(file_q.rank() == 4, "{}: q must be [B, H, N, D], got {}", cfg.q_path, file_q.shape_str());
    LRA_CHECK(file_k.shape() == file_q.shape() && file_v.shape() == file_q.shape(),
              "{}: q {}, k {}, v {} must have one shape", config_path, file_q.shape_str(), file_k.shape_str(),
              file_v.shape_str());
    cfg.batch = file_q.dim(0);
    cfg.heads = file_q.dim(1);
    cfg.head_dim = file_q.dim(3);
    if (cfg.seq_lens.empty()) cfg.seq_lens.push_back(file_q.dim(2));
    for (int64_t n : cfg.seq_lens)
      LRA_CHECK(n <= file_q.dim(2), "{}: seq_len {} exceeds the N = {} of {}", config_path, n, file_q.dim(2),
                cfg.q_path);
  }

  const std::vector<std::string> columns{"backend", "params", "device", "dtype", "batch", "heads", "seq_len",
                                         "head_dim", "seed", "input", "error_rel_fro", "attn_error_rel_fro",
                                         "time_ms", "commit"};
  core::CsvWriter csv(out_path, columns);
  std::set<std::string> done;
  auto key_of = [](const std::vector<std::string>& v) {
    std::string k;
    for (const auto& s : v) k += s + "\x1f";
    return k;
  };
  {
    core::CsvTable existing = core::read_csv(out_path);
    std::vector<std::size_t> idx;
    for (const char* c : {"backend", "params", "device", "dtype", "batch", "heads", "seq_len", "head_dim", "seed", "input"})
      idx.push_back(existing.column(c));
    for (const auto& row : existing.rows) {
      std::vector<std::string> k;
      for (std::size_t i : idx) k.push_back(row[i]);
      done.insert(key_of(k));
    }
  }
  std::string input_desc = cfg.input_type == "gaussian" ? "gaussian:" + core::csv_number(cfg.scale)
                                                        : "npy:" + cfg.q_path;
  std::string dtype_name(core::dtype_name(cfg.dtype));
  std::size_t total = cfg.backends.size() * cfg.seq_lens.size() * cfg.seeds.size(), count = 0, written = 0;
  auto start = std::chrono::steady_clock::now();

  for (int64_t n : cfg.seq_lens) {
    for (uint64_t seed : cfg.seeds) {
      attention::AttnShape shape{cfg.batch, cfg.heads, n, cfg.head_dim};
      core::Tensor q, k, v;
      auto pending = [&](const YAML::Node& spec) {
        return !done.count(key_of({spec["type"].as<std::string>(), attention::spec_params(spec), "cpu", dtype_name,
                                   std::to_string(cfg.batch), std::to_string(cfg.heads), std::to_string(n),
                                   std::to_string(cfg.head_dim), std::to_string(seed), input_desc}));
      };
      bool any = false;
      for (const auto& spec : cfg.backends) any = any || pending(spec);
      if (!any) {
        count += cfg.backends.size();
        continue;
      }
      if (cfg.input_type == "gaussian") {
        core::Shape s{cfg.batch, cfg.heads, n, cfg.head_dim};
        q = core::Tensor::empty(s, cfg.dtype);
        k = core::Tensor::empty(s, cfg.dtype);
        v = core::Tensor::empty(s, cfg.dtype);
        core::fill_normal(q, seed, 0, 0.0, cfg.scale);
        core::fill_normal(k, seed, uint64_t{1} << 40, 0.0, cfg.scale);
        core::fill_normal(v, seed, uint64_t{2} << 40, 0.0, 1.0);
      } else {
        q = prefix(file_q, n);
        k = prefix(file_k, n);
        v = prefix(file_v, n);
      }
      // Exact reference: output and attention matrix.
      double sc = 1.0 / std::sqrt(static_cast<double>(cfg.head_dim));
      core::Tensor ref_probs = core::softmax(core::matmul(q, k, false, true), core::Tensor(), sc);
      core::Tensor ref_out = core::matmul(ref_probs, v);
      if (n > cfg.attn_max_seq) ref_probs = core::Tensor();
      for (const auto& spec : cfg.backends) {
        ++count;
        if (!pending(spec)) continue;
        attention::AttentionOptions options;
        options.seed = seed;
        options.dtype = cfg.dtype;
        auto attn = attention::make_attention(spec, shape, options, config_path + " (backends)");
        attention::Context ctx;
        core::Tensor out;
        auto t0 = std::chrono::steady_clock::now();
        attn->forward(q, k, v, core::Tensor(), out, ctx);
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        double err = rel_fro(out, ref_out);
        std::string attn_err;
        if (ref_probs.defined() && probe_allowed(spec)) {
          ctx.clear();
          attn_err = core::csv_number(rel_fro(probe_matrix(*attn, q, k, core::Tensor()), ref_probs));
        }
        std::string type = spec["type"].as<std::string>(), params = attention::spec_params(spec);
        csv.write_row({type, params, "cpu", dtype_name, std::to_string(cfg.batch), std::to_string(cfg.heads),
                       std::to_string(n), std::to_string(cfg.head_dim), std::to_string(seed), input_desc,
                       core::csv_number(err), attn_err, core::csv_number(ms), core::git_commit()});
        ++written;
        double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::fprintf(stderr, "[%zu/%zu] %s %s N=%lld seed=%llu: error %.4g%s%s (%.1fs elapsed)\n", count, total,
                     type.c_str(), params.c_str(), static_cast<long long>(n), static_cast<unsigned long long>(seed),
                     err, attn_err.empty() ? "" : ", attention matrix ", attn_err.c_str(), elapsed);
      }
    }
  }
  std::printf("lra approx: %zu rows written, %zu already present -> %s\n", written, total - written, out_path.c_str());
  return 0;
}

}  // namespace

LRA_REGISTER_COMMAND(Command{"approx", "approximation error of attention backends against exact softmax",
                             usage_text, run_approx});

}  // namespace lra::harness
