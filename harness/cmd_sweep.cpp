// `lra sweep CONFIG [--out FILE.csv]`: time and memory of attention backends over a grid
// (kind: attention), or of whole training steps per (task, attention) cell (kind: train_step).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "harness/commands.h"
#include "harness/sweep.h"
#include "harness/train_step.h"

namespace lra::harness {
namespace {

int run_sweep_command(const std::vector<std::string>& args) {
  ParsedArgs parsed = parse_args("sweep", args, {"--out"}, {}, 1);
  LRA_CHECK(parsed.positionals.size() == 1, "usage: lra sweep CONFIG [--out FILE.csv]");
  const std::string config_path = parsed.positionals[0];
  const YAML::Node root = load_sweep_yaml(config_path);
  const bool train_steps = sweep_kind(root, config_path) == "train_step";
  // Both kinds parse (every key checked) before anything is written.
  TrainStepConfig train_config;
  SweepConfig config;
  if (train_steps)
    train_config = parse_train_step_config(root, config_path);
  else
    config = parse_sweep_config(root, config_path);
  std::string out = parsed.get("--out");
  if (out.empty()) {
    out = "results/sweeps/" + std::filesystem::path(config_path).stem().string() + ".csv";
  }
  auto parent = std::filesystem::path(out).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  int stop_after = -1;
  if (const char* env = std::getenv("LRA_SWEEP_STOP_AFTER"); env && *env) {
    stop_after = std::atoi(env);
  }
  int errors = train_steps ? run_train_step_sweep(train_config, out, stop_after)
                           : run_sweep(config, out, stop_after);
  std::printf("%s\n", out.c_str());
  LRA_CHECK(errors == 0, "sweep: {} {} failed (status 'error' in {})", errors,
            train_steps ? "cells" : "points", out);
  return 0;
}

}  // namespace

LRA_REGISTER_COMMAND(Command{
    "sweep", "time and memory of attention backends over a grid, or of training steps",
    "usage: lra sweep CONFIG [--out FILE.csv]\n\n"
    "One flushed CSV row per point or cell; re-running with the same --out skips those\n"
    "already there. Default --out: results/sweeps/<config name>.csv.\n\n"
    "kind: attention (the default). Measures every point of the grid in CONFIG (backends x\n"
    "passes x batch x heads x head_dim x seq_len): warm-up calls, then repetitions until\n"
    "min_reps and min_seconds are both reached; median/p10/p90 time (steady clock or CUDA\n"
    "events), allocator peak bytes beyond the inputs, analytic bytes and FLOPs from cost(),\n"
    "peak RSS on CPU. Points over memory_limit are recorded as 'oom'.\n"
    "Config keys: kind, device, dtype, batch, heads, head_dim, seq_len, passes (fwd,\n"
    "fwd+bwd), backends (list of attention specs, or 'all'), warmup, min_reps, max_reps,\n"
    "min_seconds, max_call_seconds, memory_limit (e.g. 20GiB), seed.\n\n"
    "kind: train_step. Times whole training steps (forward, backward, AdamW; the step of\n"
    "`lra train`) of the classifier for every (task, attention) cell: random tokens, all-ones\n"
    "mask, `warmup` steps then `reps` timed steps (CUDA events on cuda); median/p10/p90 ms,\n"
    "tokens/s, the allocator's peak over the cell, and the time predicted from an analytic\n"
    "FLOP/byte count of the step and the device's ceilings. Cells whose estimated peak is\n"
    "over memory_limit are 'oom'. Config keys: kind, device, dtype, tasks (list of {task,\n"
    "batch, seq_len, label, vocab, num_classes}), attentions (label: attention spec), model\n"
    "(training-config model keys; default the Nystromformer LRA settings), warmup (5), reps\n"
    "(20), memory_limit, seed, ceilings (h100_fp32 | h100_tf32 | none |\n"
    "{gemm_flops_per_s, copy_bytes_per_s}; default h100_fp32 on cuda, none on cpu).",
    run_sweep_command});

}  // namespace lra::harness
