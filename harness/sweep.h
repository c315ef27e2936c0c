#pragma once
// The sweep machinery behind `lra sweep` (and the efficiency tables of `lra reproduce`):
// time and memory of attention backends over a grid of shapes, each point warmed up and
// repeated until both a minimum count and a minimum time are reached.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/error.h"
#include "core/precision.h"

namespace lra::harness {

// `kind:` of a sweep config: "attention" (the default: the grid of attention calls below)
// or "train_step" (whole training steps, harness/train_step.h). Anything else is an error
// naming `context`.
std::string sweep_kind(const YAML::Node& root, const std::string& context);
// Reads a sweep config file (errors name the file).
YAML::Node load_sweep_yaml(const std::string& path);

struct SweepConfig {
  // cpu: steady-clock times; cuda: CUDA-event times of each call (core/device_timer.h) and
  // the CUDA allocator's peak bytes; running needs a device (the config parses anywhere).
  core::Device device = core::Device::cpu;
  core::DType dtype = core::DType::f32;
  // `dtype: tf32`: f32 tensors with TF32 products on CUDA (core/precision.h); rows say tf32.
  core::MatmulPrecision precision = core::MatmulPrecision::fp32;
  std::vector<int64_t> batch{8}, heads{4}, head_dim{64}, seq_len{1024};
  std::vector<std::string> passes{"fwd"};  // "fwd" and/or "fwd+bwd"
  std::vector<YAML::Node> backends;        // `attention:`-style specs
  int warmup = 1;
  int min_reps = 5;
  int max_reps = 1000;
  double min_seconds = 0.5;
  // Points whose inputs + analytic bytes exceed this are recorded as `oom` (0 = no limit).
  double memory_limit = 0;
  // A point whose first warm-up call takes longer than this is recorded from that one
  // call (status `slow`) and the longer sequences of the same series are `skipped`
  // (0 = no limit). Keeps quick runs bounded on slow machines.
  double max_call_seconds = 0;
  uint64_t seed = 0;
  std::string context;  // the config file, for messages
};

// Parses a sweep config mapping; unknown keys and wrong types are errors naming `context`.
SweepConfig parse_sweep_config(const YAML::Node& node, const std::string& context);

// Parses a byte count: a number or a string with a unit ("24GiB", "512 MiB", "1e9").
double parse_bytes(const YAML::Node& node, const std::string& what);
// "12.3 MiB" / "4.56 GiB", for messages.
std::string format_bytes(double bytes);

// A scalar config value of type T; errors say "<context>: <key> must be <type>".
template <typename T>
T config_scalar(const YAML::Node& node, const std::string& key, const std::string& context,
                const char* type) {
  LRA_CHECK(node.IsScalar(), "{}: {} must be {}", context, key, type);
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    fail("{}: {} must be {}, got '{}'", context, key, type, node.Scalar());
  }
}

// The rows already in a sweep CSV (opened by a CsvWriter first, so a partial last line is
// gone): the values of `key_columns` joined by '|' -> the row's status.
std::map<std::string, std::string> existing_rows(const std::string& csv,
                                                 const std::vector<std::string>& key_columns);
// True when an lra::Error is a device allocation that failed even after the allocator
// freed its cache: the GPU's out-of-memory, recorded as `oom` like std::bad_alloc.
bool is_device_oom(const Error& error);

struct SweepPoint {
  YAML::Node spec;     // the backend's spec
  std::string backend;  // spec type
  std::string params;   // canonical params text (attention::spec_params)
  core::Device device = core::Device::cpu;
  core::DType dtype = core::DType::f32;
  core::MatmulPrecision precision = core::MatmulPrecision::fp32;
  int64_t batch = 1, heads = 1, seq_len = 1, head_dim = 1;
  std::string pass;  // "fwd" or "fwd+bwd"
};

// Grid order: backend, pass, batch, heads, head_dim, seq_len (seq_len innermost, so a
// series over N is contiguous).
std::vector<SweepPoint> expand_grid(const SweepConfig& config);

struct SweepResult {
  int reps = 0;
  double time_ms_median = 0, time_ms_p10 = 0, time_ms_p90 = 0;
  double peak_bytes = 0;      // allocator peak minus live bytes before the call
  double analytic_bytes = 0;  // from the backend's cost()
  double peak_rss_bytes = 0;  // CPU: process peak RSS during the point minus RSS before it
  double flops = 0, gflops = 0;
  std::string status = "ok";  // ok | oom | skipped | slow | error
  std::string reason;
};

// Analytic bytes and FLOPs of a point (from cost()) without running it.
SweepResult analyse_point(const SweepPoint& point, const SweepConfig& config);
// Measures one point (after the memory check of analyse_point).
SweepResult measure_point(const SweepPoint& point, const SweepConfig& config);

// CSV schema of `lra sweep` and the columns that identify a point (resume key).
const std::vector<std::string>& sweep_columns();
const std::vector<std::string>& sweep_key_columns();
std::map<std::string, std::string> sweep_row(const SweepPoint& point, const SweepResult& result,
                                             const SweepConfig& config);
// Key of a point as it appears in the CSV (values of sweep_key_columns joined).
std::string sweep_point_key(const SweepPoint& point);

// Runs every point of the grid not yet in `out_csv`, appending one flushed row per point.
// Returns the number of points with status `error`. Progress goes to stderr.
// stop_after >= 0 ends the run after that many new rows (test hook, LRA_SWEEP_STOP_AFTER).
int run_sweep(const SweepConfig& config, const std::string& out_csv, int stop_after = -1);

// Quantile (linear interpolation between order statistics) of unsorted values.
double quantile(std::vector<double> values, double q);

}  // namespace lra::harness
