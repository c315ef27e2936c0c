// `lra sweep` with device: cuda. Without a GPU the GPU scaling config must still parse and
// the sweep must stop with a clear "no CUDA device" error before writing anything; with a
// GPU a tiny CUDA grid is measured (CUDA-event times, device allocator peaks).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "cli_util.h"
#include "core/csv.h"
#include "core/cuda_runtime_info.h"

namespace lra::test {
namespace {

namespace fs = std::filesystem;

fs::path gpu_config() {
  return source_dir() / "configs" / "sweeps" / "scaling_gpu.yaml";
}

TEST(SweepCuda, GpuScalingConfigsAreRejectedClearlyWithoutADevice) {
  if (core::cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  for (const std::string name :
       {"scaling_gpu.yaml", "scaling_gpu_tf32.yaml", "scaling_gpu_bf16.yaml"}) {
    auto dir = scratch_dir("sweep_cuda_no_device_" + fs::path(name).stem().string());
    auto csv = dir / "scaling.csv";
    auto config = source_dir() / "configs" / "sweeps" / name;
    auto r = run_lra("sweep " + quote(config.string()) + " --out " + quote(csv.string()));
    EXPECT_NE(r.status, 0) << r.output;
    // Parsed (a bad key or value would be reported first), then refused for the device.
    EXPECT_NE(r.output.find(name + ": device cuda:"), std::string::npos) << r.output;
    bool reason = r.output.find("no CUDA device") != std::string::npos ||
                  r.output.find("CUDA not built") != std::string::npos;
    EXPECT_TRUE(reason) << r.output;
    EXPECT_FALSE(fs::exists(csv)) << "nothing is written before the device check";
  }
}

TEST(SweepCuda, Tf32AndBf16RowsOnTheGpuSayTheirDtype) {
  if (core::cuda_device_count() == 0)
    GTEST_SKIP() << "skipping GPU test: " << core::cuda_unavailable_reason();
  for (const std::string dtype : {"tf32", "bf16"}) {
    auto dir = scratch_dir("sweep_cuda_" + dtype);
    auto config = dir / (dtype + ".yaml");
    write_file(config,
               "device: cuda\ndtype: " + dtype + "\nbatch: [1]\nheads: [2]\nhead_dim: [64]\n"
               "seq_len: [256]\npasses: [fwd, fwd+bwd]\nbackends: [{type: softmax}]\n"
               "warmup: 1\nmin_reps: 2\nmin_seconds: 0\n");
    auto csv = dir / (dtype + ".csv");
    auto r = run_lra("sweep " + quote(config.string()) + " --out " + quote(csv.string()));
    ASSERT_EQ(r.status, 0) << r.output;
    auto table = core::read_csv(csv.string());
    ASSERT_EQ(table.rows.size(), 2u);
    for (const auto& row : table.rows) {
      EXPECT_EQ(row[table.column("dtype")], dtype);
      EXPECT_EQ(row[table.column("status")], "ok") << row[table.column("reason")];
    }
  }
}

TEST(SweepCuda, GpuScalingConfigParsesAndChecksItsBackendsOnAGpu) {
  if (core::cuda_device_count() == 0)
    GTEST_SKIP() << "skipping GPU test: " << core::cuda_unavailable_reason();
  auto dir = scratch_dir("sweep_cuda_stop0");
  auto csv = dir / "scaling.csv";
  // Stop before the first point: the config parses and every backend is built.
  auto r = run_lra("sweep " + quote(gpu_config().string()) + " --out " + quote(csv.string()),
                   "LRA_SWEEP_STOP_AFTER=0");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(core::read_csv(csv.string()).rows.size(), 0u);
}

TEST(SweepCuda, TinyGridOnTheGpu) {
  if (core::cuda_device_count() == 0)
    GTEST_SKIP() << "skipping GPU test: " << core::cuda_unavailable_reason();
  auto dir = scratch_dir("sweep_cuda_tiny");
  write_file(dir / "sweep.yaml", R"(device: cuda
dtype: f32
batch: [2]
heads: [2]
head_dim: [16]
seq_len: [64, 200]
passes: [fwd, fwd+bwd]
backends:
  - {type: softmax}
  - {type: nystrom, landmarks: 8}
  - {type: linformer, k: 32}
  - {type: performer, features: 32, kernel: relu}
  - {type: linear}
warmup: 1
min_reps: 3
min_seconds: 0
)");
  auto csv = dir / "out.csv";
  auto r =
      run_lra("sweep " + quote((dir / "sweep.yaml").string()) + " --out " + quote(csv.string()));
  ASSERT_EQ(r.status, 0) << r.output;
  core::CsvTable t = core::read_csv(csv.string());
  ASSERT_EQ(t.rows.size(), 20u);
  for (const auto& row : t.rows) {
    EXPECT_EQ(row[t.column("status")], "ok") << row[t.column("reason")];
    EXPECT_EQ(row[t.column("device")], "cuda");
    double median = std::stod(row[t.column("time_ms_median")]);
    EXPECT_TRUE(std::isfinite(median) && median > 0) << median;
    // The call allocates at least its output [B, H, N, D] on the device.
    double n = std::stod(row[t.column("seq_len")]);
    EXPECT_GE(std::stod(row[t.column("peak_bytes")]), 2 * 2 * n * 16 * 4)
        << row[t.column("backend")];
  }
}

}  // namespace
}  // namespace lra::test
