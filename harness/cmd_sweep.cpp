// `lra sweep CONFIG [--out FILE.csv]`: time and memory of attention backends over a grid.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "harness/commands.h"
#include "harness/sweep.h"

namespace lra::harness {
namespace {

int run_sweep_command(const std::vector<std::string>& args) {
  ParsedArgs parsed = parse_args("sweep", args, {"--out"}, {}, 1);
  LRA_CHECK(parsed.positionals.size() == 1, "usage: lra sweep CONFIG [--out FILE.csv]");
  const std::string config_path = parsed.positionals[0];
  SweepConfig config = load_sweep_config(config_path);
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
  int errors = run_sweep(config, out, stop_after);
  std::printf("%s\n", out.c_str());
  LRA_CHECK(errors == 0, "sweep: {} points failed (status 'error' in {})", errors, out);
  return 0;
}

}  // namespace

LRA_REGISTER_COMMAND(Command{
    "sweep", "time and memory of attention backends over a grid of shapes",
    "usage: lra sweep CONFIG [--out FILE.csv]\n\n"
    "Measures every point of the grid in CONFIG (backends x passes x batch x heads x\n"
    "head_dim x seq_len): warm-up calls, then repetitions until min_reps and min_seconds\n"
    "are both reached; median/p10/p90 time (steady clock), allocator peak bytes beyond the\n"
    "inputs, analytic bytes and FLOPs from cost(), peak RSS on CPU. Points over memory_limit\n"
    "are recorded as 'oom'. One flushed CSV row per point; re-running with the same --out\n"
    "skips points already there. Default --out: results/sweeps/<config name>.csv.\n\n"
    "Config keys: device, dtype, batch, heads, head_dim, seq_len, passes (fwd, fwd+bwd),\n"
    "backends (list of attention specs, or 'all'), warmup, min_reps, max_reps, min_seconds,\n"
    "max_call_seconds, memory_limit (e.g. 20GiB), seed.",
    run_sweep_command});

}  // namespace lra::harness
