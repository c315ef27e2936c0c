#pragma once
// `lra sweep` with `kind: train_step`: the time of whole training steps (forward, backward,
// AdamW) of the encoder classifier, one cell per (task, attention), measured the way the
// PyTorch anchor (../shared/anchors/h100_pytorch_lra_train_step.csv) was: the model built
// with the Nyströmformer authors' LRA settings, random tokens with an all-ones mask,
// `warmup` steps, then `reps` timed steps (CUDA events on cuda, the steady clock on the
// CPU: core/device_timer.h); median, p10, p90; peak = the device allocator's maximum over
// the whole cell (model, optimizer state and activations). Each step is
// model::train_step, the same function `lra train` runs every step. Beside each
// measurement: the predicted time from the analytic count of the step
// (model/step_count.h) and the device's ceilings.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/precision.h"

namespace lra::harness {

// The H100 ceilings measured beside the anchors (../shared/anchors/README.md): fp32 GEMM
// (cuBLAS SGEMM, TF32 off), TF32 GEMM, and device copy (bytes read + written).
inline constexpr double kH100Fp32GemmFlopsPerS = 51e12;
inline constexpr double kH100Tf32GemmFlopsPerS = 390e12;
inline constexpr double kH100CopyBytesPerS = 3.0e12;

// The two ceilings a prediction uses. `ceilings:` in the config: `h100_fp32` (the default
// on cuda with matmul_precision fp32), `h100_tf32` (the default with tf32), `none` (the
// default on cpu: predicted_ms left empty), or {gemm_flops_per_s: F, copy_bytes_per_s: W}
// for any other device. The GEMM rate bounds every FLOP of the count.
struct Ceilings {
  std::string name;  // "h100_fp32", "h100_tf32", "custom" or "none"
  double gemm_flops_per_s = 0, copy_bytes_per_s = 0;
  bool defined() const { return gemm_flops_per_s > 0 && copy_bytes_per_s > 0; }
};

struct TrainStepTask {
  std::string task;   // an lra task name (vocabulary, classes, pairs from its registration)
  std::string label;  // the CSV's `task` column (default: task), e.g. pathfinder32
  int64_t batch = 0, seq_len = 0;
  int64_t vocab = 0, num_classes = 0;
  bool pairs = false;
};

struct TrainStepAttention {
  std::string label;  // the CSV's `attention` column, e.g. nystrom-64
  YAML::Node spec;    // an `attention:` spec
};

struct TrainStepConfig {
  core::Device device = core::Device::cpu;
  core::DType dtype = core::DType::f32;
  // Precisions of f32 products on CUDA (core/precision.h): each cell runs once per entry.
  std::vector<core::MatmulPrecision> matmul_precisions{core::MatmulPrecision::fp32};
  YAML::Node model;  // a training config's `model:` section (empty: the authors' settings)
  std::vector<TrainStepTask> tasks;
  std::vector<TrainStepAttention> attentions;
  int warmup = 5, reps = 20;
  double memory_limit = 0;  // cells whose estimated peak exceeds it are `oom` (0: no limit)
  uint64_t seed = 0;
  Ceilings ceilings;            // when given in the config: for every cell
  bool ceilings_given = false;  // else the default for the device and the cell's precision
  std::string context;          // the config file, for messages
};

// Parses a `kind: train_step` sweep config; unknown keys, wrong types, unknown tasks and
// invalid attention specs or model keys are errors naming `context` and the key.
TrainStepConfig parse_train_step_config(const YAML::Node& node, const std::string& context);

// CSV schema: the anchor's columns first, then the prediction and the provenance.
const std::vector<std::string>& train_step_columns();
const std::vector<std::string>& train_step_key_columns();

// The ceilings of a cell run at `precision`: the config's, or the default (h100_fp32 or
// h100_tf32 on cuda, none on cpu).
Ceilings ceilings_for(const TrainStepConfig& config, core::MatmulPrecision precision);

// Runs every (task, attention, precision) cell not yet in `out_csv`, tasks outer, appending one
// flushed row per cell. Returns the number of cells with status `error`. Progress on
// stderr. stop_after >= 0 ends the run after that many new rows (LRA_SWEEP_STOP_AFTER).
int run_train_step_sweep(const TrainStepConfig& config, const std::string& out_csv,
                         int stop_after = -1);

}  // namespace lra::harness
