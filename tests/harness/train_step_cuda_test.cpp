// `lra sweep` with `kind: train_step` and `device: cuda`. Without a GPU the shipped GPU
// config must still parse and the sweep must stop with a clear "no CUDA device" error
// before writing anything; with a GPU, tiny cells are timed with CUDA events and the
// shipped config resolves every cell.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "cli_util.h"
#include "core/csv.h"
#include "core/cuda_runtime_info.h"

namespace lra::test {
namespace {

namespace fs = std::filesystem;

fs::path gpu_config() { return source_dir() / "configs" / "sweeps" / "train_step_gpu.yaml"; }

TEST(TrainStepCuda, GpuConfigIsRejectedClearlyWithoutADevice) {
  if (core::cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  auto dir = scratch_dir("train_step_cuda_no_device");
  auto csv = dir / "train_step.csv";
  auto r = run_lra("sweep " + quote(gpu_config().string()) + " --out " + quote(csv.string()));
  EXPECT_NE(r.status, 0) << r.output;
  // Parsed and every cell resolved (a bad key would be reported first), then refused.
  EXPECT_NE(r.output.find("train_step_gpu.yaml: device cuda:"), std::string::npos) << r.output;
  bool reason = r.output.find("no CUDA device") != std::string::npos ||
                r.output.find("CUDA not built") != std::string::npos;
  EXPECT_TRUE(reason) << r.output;
  EXPECT_FALSE(fs::exists(csv)) << "nothing is written before the device check";
}

TEST(TrainStepCuda, GpuConfigResolvesEveryCellOnAGpu) {
  if (core::cuda_device_count() == 0)
    GTEST_SKIP() << "skipping GPU test: " << core::cuda_unavailable_reason();
  auto dir = scratch_dir("train_step_cuda_stop0");
  auto csv = dir / "train_step.csv";
  auto r = run_lra("sweep " + quote(gpu_config().string()) + " --out " + quote(csv.string()),
                   "LRA_SWEEP_STOP_AFTER=0");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(core::read_csv(csv.string()).rows.size(), 0u);
}

TEST(TrainStepCuda, TinyCellsOnTheGpu) {
  if (core::cuda_device_count() == 0)
    GTEST_SKIP() << "skipping GPU test: " << core::cuda_unavailable_reason();
  auto dir = scratch_dir("train_step_cuda_tiny");
  write_file(dir / "sweep.yaml", R"(kind: train_step
device: cuda
tasks:
  - {task: listops, batch: 4, seq_len: 256}
  - {task: pathfinder, label: pathfinder32, batch: 8, seq_len: 256}
attentions:
  softmax: {type: softmax}
  nystrom-64: {type: nystrom, landmarks: 64, pinv_iters: 6, conv_kernel: 35}
  linformer-256: {type: linformer, k: 256}
  linear: {type: linear}
matmul_precision: [fp32, tf32]
warmup: 2
reps: 5
)");
  auto csv = dir / "out.csv";
  auto r =
      run_lra("sweep " + quote((dir / "sweep.yaml").string()) + " --out " + quote(csv.string()));
  ASSERT_EQ(r.status, 0) << r.output;
  core::CsvTable t = core::read_csv(csv.string());
  ASSERT_EQ(t.rows.size(), 16u);
  std::map<std::string, double> predicted;
  for (const auto& row : t.rows) {
    const std::string precision = row[t.column("matmul_precision")];
    const std::string cell = row[t.column("task")] + " " + row[t.column("attention")];
    ASSERT_EQ(row[t.column("status")], "ok") << cell << ": " << row[t.column("reason")];
    EXPECT_EQ(row[t.column("device")], "cuda");
    EXPECT_FALSE(row[t.column("device_model")].empty());
    ASSERT_TRUE(precision == "fp32" || precision == "tf32") << precision;
    EXPECT_EQ(row[t.column("ceilings")], "h100_" + precision);
    predicted[cell + " " + precision] = std::stod(row[t.column("predicted_ms")]);
    const double median = std::stod(row[t.column("step_ms_median")]);
    EXPECT_TRUE(std::isfinite(median) && median > 0) << cell;
    const double batch = std::stod(row[t.column("batch")]);
    EXPECT_NEAR(std::stod(row[t.column("tokens_per_s")]), batch * 256 / (median * 1e-3),
                1e-6 * batch * 256 / (median * 1e-3));
    // Parameters, gradients and both AdamW moments live in the CUDA allocator.
    EXPECT_GE(std::stod(row[t.column("peak_bytes")]), 16 * std::stod(row[t.column("parameters")]))
        << cell;
    EXPECT_GT(std::stod(row[t.column("predicted_ms")]), 0.0) << cell;
    const double classes = std::stod(row[t.column("num_classes")]);
    EXPECT_NEAR(std::stod(row[t.column("loss")]), std::log(classes), 0.3) << cell;
  }
  // The TF32 ceiling can only shorten a prediction.
  for (const auto& [key, ms] : predicted) {
    if (key.size() > 5 && key.substr(key.size() - 4) == "fp32") {
      EXPECT_LE(predicted[key.substr(0, key.size() - 4) + "tf32"], ms) << key;
    }
  }
}

}  // namespace
}  // namespace lra::test
