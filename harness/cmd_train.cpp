// `lra train CONFIG [--set section.key=value ...] [--out DIR] [--resume DIR]`.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "core/error.h"
#include "harness/commands.h"
#include "model/train.h"

namespace lra::harness {
namespace {

const char* usage_text =
    "usage: lra train CONFIG [--set section.key=value ...] [--out DIR]\n"
    "       lra train --resume DIR [--set train.stop_at=N ...]\n\n"
    "Trains the encoder classifier of CONFIG (sections task, model, attention, train;\n"
    "see configs/README.md) and evaluates it: validation every train.eval_every steps,\n"
    "the best validation checkpoint is evaluated on test at the end.\n\n"
    "  --set K=V     override one key (repeatable), e.g. --set train.steps=200,\n"
    "                or a whole section from a file: --set "
    "attention=configs/attention/nystrom-64.yaml\n"
    "  --out DIR     run directory (default results/runs/<config>-<attention>-<UTC time>)\n"
    "  --resume DIR  continue the run in DIR from DIR/last.ckpt with DIR/config.yaml\n"
    "                (only train.stop_at, train.threads, train.log_every may change)\n\n"
    "The run directory holds config.yaml (resolved), metrics.csv, best.ckpt, last.ckpt\n"
    "and summary.json. Progress goes to stderr; the summary line to stdout.";

std::string utc_stamp() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y%m%d-%H%M%S", &tm);
  return buf;
}

int run_train(const std::vector<std::string>& args) {
  ParsedArgs parsed = parse_args("train", args, {"--set", "--out", "--resume"}, {}, 1);
  std::vector<std::string> overrides;
  if (parsed.values.count("--set")) overrides = parsed.all("--set");
  std::string out_dir;
  YAML::Node config;
  bool resume = parsed.has("--resume");
  if (resume) {
    LRA_CHECK(parsed.positionals.empty() && !parsed.has("--out"),
              "train: --resume DIR takes the run's own config (no CONFIG or --out)");
    out_dir = parsed.get("--resume");
    std::string cfg = out_dir + "/config.yaml";
    LRA_CHECK(std::filesystem::exists(cfg), "train: --resume {}: no config.yaml there", out_dir);
    // The run's config.yaml holds the stop_at of the previous invocation: go on to the end
    // unless the command line says otherwise.
    overrides.insert(overrides.begin(), "train.stop_at=0");
    config = model::load_config(cfg, overrides);
  } else {
    LRA_CHECK(parsed.positionals.size() == 1,
              "train: expected one CONFIG file (see `lra train --help`)");
    const std::string& path = parsed.positionals[0];
    config = model::load_config(path, overrides);
    out_dir = parsed.get("--out");
    if (out_dir.empty()) {
      std::string stem = std::filesystem::path(path).stem().string();
      out_dir = "results/runs/" + stem + "-" + config["attention"]["type"].as<std::string>() + "-" +
                utc_stamp();
    }
  }
  model::TrainSummary s = model::train(config, out_dir, resume);
  std::printf(
      "run %s: steps %lld, best val acc %.4f (step %lld), test acc %s, %.1f s, %.0f tok/s\n",
      s.out_dir.c_str(), static_cast<long long>(s.steps), s.best_val_accuracy,
      static_cast<long long>(s.best_step),
      std::isfinite(s.test_accuracy) ? fmt::format("{:.4f}", s.test_accuracy).c_str()
                                     : "not evaluated",
      s.wall_seconds, s.tokens_per_second);
  return 0;
}

}  // namespace

LRA_REGISTER_COMMAND(Command{"train", "train and evaluate a model from a config", usage_text,
                             run_train});

}  // namespace lra::harness
