// `lra sweep` through the binary: grid rows, memory lower bounds, oom rows, resume after a
// kill, bad configs.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "cli_util.h"
#include "core/csv.h"

namespace lra::test {
namespace {

const char* kTinySweep = R"(device: cpu
dtype: f32
batch: [1]
heads: [2]
head_dim: [8]
seq_len: [16, 48]
passes: [fwd, fwd+bwd]
backends:
  - {type: softmax}
  - {type: nystrom, landmarks: 4}
warmup: 1
min_reps: 3
min_seconds: 0
seed: 3
)";

std::string key_of(const core::CsvTable& t, const std::vector<std::string>& row) {
  std::string key;
  for (const char* c : {"backend", "params", "device", "dtype", "batch", "heads", "seq_len", "head_dim", "pass"})
    key += row[t.column(c)] + "|";
  return key;
}

std::set<std::string> expected_keys() {
  std::set<std::string> keys;
  for (std::string backend : {"softmax||", "nystrom|landmarks=4|"})
    for (std::string pass : {"fwd", "fwd+bwd"})
      for (std::string n : {"16", "48"}) keys.insert(backend + "cpu|f32|1|2|" + n + "|8|" + pass + "|");
  return keys;
}

TEST(Sweep, TinyGridWritesOneRowPerPoint) {
  auto dir = scratch_dir("tiny_grid");
  write_file(dir / "sweep.yaml", kTinySweep);
  auto csv = dir / "out.csv";
  auto r = run_lra("sweep " + quote((dir / "sweep.yaml").string()) + " --out " + quote(csv.string()));
  ASSERT_EQ(r.status, 0) << r.output;
  core::CsvTable t = core::read_csv(csv.string());
  ASSERT_EQ(t.rows.size(), 8u);
  std::set<std::string> keys;
  for (const auto& row : t.rows) {
    keys.insert(key_of(t, row));
    EXPECT_EQ(row[t.column("status")], "ok") << row[t.column("reason")];
    double median = std::stod(row[t.column("time_ms_median")]);
    double p10 = std::stod(row[t.column("time_ms_p10")]);
    double p90 = std::stod(row[t.column("time_ms_p90")]);
    EXPECT_GT(median, 0.0);
    EXPECT_LE(p10, median);
    EXPECT_LE(median, p90);
    EXPECT_GE(std::stoi(row[t.column("reps")]), 3);
    // GFLOP/s is the analytic FLOPs over the median time.
    double flops = std::stod(row[t.column("flops")]);
    EXPECT_NEAR(std::stod(row[t.column("gflops")]), flops / (median * 1e-3) / 1e9,
                1e-6 * flops / (median * 1e-3) / 1e9);
    const int64_t n = std::stoll(row[t.column("seq_len")]);
    const double peak = std::stod(row[t.column("peak_bytes")]);
    // Every backend allocates at least its output [B, H, N, D] in f32.
    EXPECT_GE(peak, 1.0 * 2 * n * 8 * 4);
    if (row[t.column("backend")] == "softmax") {
      // Exact attention (the fused CPU op) holds at least one tile of full score rows,
      // 12 or more rows of N, from lra's allocator.
      EXPECT_GE(peak, 1.0 * 12 * n * 4);
    }
    if (row[t.column("pass")] == "fwd+bwd") {
      // The backward allocates d_q, d_k, d_v while the forward's output is alive.
      EXPECT_GE(peak, 4.0 * 2 * n * 8 * 4);
    }
    EXPECT_FALSE(row[t.column("analytic_bytes")].empty());
    EXPECT_FALSE(row[t.column("peak_rss_bytes")].empty());
    EXPECT_EQ(row[t.column("seed")], "3");
    EXPECT_FALSE(row[t.column("commit")].empty());
  }
  EXPECT_EQ(keys, expected_keys());
}

TEST(Sweep, PointsOverTheMemoryLimitAreRecordedNotDropped) {
  auto dir = scratch_dir("oom");
  write_file(dir / "sweep.yaml", std::string(kTinySweep) + "memory_limit: 20KiB\n");
  auto csv = dir / "out.csv";
  auto r = run_lra("sweep " + quote((dir / "sweep.yaml").string()) + " --out " + quote(csv.string()));
  ASSERT_EQ(r.status, 0) << r.output;
  core::CsvTable t = core::read_csv(csv.string());
  ASSERT_EQ(t.rows.size(), 8u);
  int oom = 0;
  for (const auto& row : t.rows) {
    const int64_t n = std::stoll(row[t.column("seq_len")]);
    const std::string status = row[t.column("status")];
    // softmax at N = 48: the inputs (3 * 2 * 48 * 8 * 4 = 9 KiB) plus the analytic bytes
    // of its cost() (output, row log-sum-exp and a 96-row tile of scores, 21 KiB): over 20 KiB.
    if (row[t.column("backend")] == "softmax" && n == 48) {
      EXPECT_EQ(status, "oom");
    }
    if (status == "oom") {
      ++oom;
      EXPECT_NE(row[t.column("reason")].find("memory_limit"), std::string::npos);
      EXPECT_TRUE(row[t.column("time_ms_median")].empty());
      EXPECT_FALSE(row[t.column("analytic_bytes")].empty());
    } else {
      EXPECT_EQ(status, "ok");
    }
  }
  EXPECT_GE(oom, 2);
}

TEST(Sweep, KilledRunResumesWithEveryPointExactlyOnce) {
  auto dir = scratch_dir("resume");
  write_file(dir / "sweep.yaml", kTinySweep);
  auto csv = dir / "out.csv";
  std::string cmd = "sweep " + quote((dir / "sweep.yaml").string()) + " --out " + quote(csv.string());
  auto first = run_lra(cmd, "LRA_SWEEP_STOP_AFTER=3");
  ASSERT_EQ(first.status, 0) << first.output;
  ASSERT_EQ(core::read_csv(csv.string()).rows.size(), 3u);
  // A writer killed mid-row leaves a partial line: the resumed run must cut it off.
  {
    std::ofstream out(csv, std::ios::app);
    out << "softmax,,cpu,f32,1,2,48";
  }
  auto second = run_lra(cmd);
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_NE(second.output.find("3 points were already"), std::string::npos) << second.output;
  core::CsvTable t = core::read_csv(csv.string());
  ASSERT_EQ(t.rows.size(), 8u);
  std::multiset<std::string> keys;
  for (const auto& row : t.rows) keys.insert(key_of(t, row));
  std::set<std::string> unique(keys.begin(), keys.end());
  EXPECT_EQ(unique.size(), keys.size());
  EXPECT_EQ(unique, expected_keys());
  // A third run has nothing left to do.
  auto third = run_lra(cmd);
  ASSERT_EQ(third.status, 0) << third.output;
  EXPECT_EQ(core::read_csv(csv.string()).rows.size(), 8u);
}

// dtype: bf16 (storage; the fused softmax computes in f32): rows say bf16, the inputs take
// half the bytes of f32 ones, and the run completes on the CPU.
TEST(Sweep, Bf16RowsForTheFusedSoftmax) {
  auto dir = scratch_dir("bf16");
  write_file(dir / "sweep.yaml", R"(device: cpu
dtype: bf16
batch: [1]
heads: [2]
head_dim: [8]
seq_len: [16, 40]
passes: [fwd, fwd+bwd]
backends:
  - {type: softmax}
warmup: 1
min_reps: 3
min_seconds: 0
seed: 3
)");
  auto csv = dir / "out.csv";
  auto r = run_lra("sweep " + quote((dir / "sweep.yaml").string()) + " --out " + quote(csv.string()));
  ASSERT_EQ(r.status, 0) << r.output;
  core::CsvTable t = core::read_csv(csv.string());
  ASSERT_EQ(t.rows.size(), 4u);
  for (const auto& row : t.rows) {
    EXPECT_EQ(row[t.column("dtype")], "bf16");
    EXPECT_EQ(row[t.column("status")], "ok") << row[t.column("reason")];
    EXPECT_GT(std::stod(row[t.column("time_ms_median")]), 0.0);
    // The output alone is [B, H, N, D] bf16 (2 bytes each) beyond the inputs.
    const int64_t n = std::stoll(row[t.column("seq_len")]);
    EXPECT_GE(std::stod(row[t.column("peak_bytes")]), 1.0 * 2 * n * 8 * 2);
  }
}

TEST(Sweep, BadConfigsAreRejectedWithKeyAndFile) {
  auto dir = scratch_dir("bad");
  struct Case {
    std::string yaml, expect;
  };
  std::vector<Case> cases{
      {std::string(kTinySweep) + "warmups: 2\n", "warmups"},
      {std::string(kTinySweep) + "memory_limit: 3 parsecs\n", "memory_limit"},
      {"backends: [{type: softmax}]\npasses: [fwd, backward]\n", "backward"},
      {"backends: [{type: no_such_backend}]\n", "no_such_backend"},
      {"backends: [{type: nystrom, landmark: 4}]\nseq_len: [16]\n", "landmark"},
      {"seq_len: [16]\n", "no backends"},
      {"backends: [{type: softmax}]\nseq_len: [0]\n", "seq_len"},
      {"backends: [{type: softmax}]\nbatch: two\n", "batch"},
      {"backends: [{type: softmax}]\ndtype: tf32\n", "dtype: tf32 applies to device cuda only"},
      {"backends: [{type: softmax}]\ndtype: bf32\n", "bf32"},
      // bf16 is a storage type of the fused softmax only: other backends are named.
      {"backends: [{type: softmax}, {type: nystrom, landmarks: 4}]\ndtype: bf16\nseq_len: [16]\n",
       "attention 'nystrom' takes f32 or f64 inputs, not bf16"},
      {"backends: [{type: softmax, kernel: composed}]\ndtype: bf16\nseq_len: [16]\n",
       "bf16 runs on the fused kernel"},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    std::string name = "bad";
    name += std::to_string(i);
    auto path = dir / (name + ".yaml");
    write_file(path, cases[i].yaml);
    auto csv = dir / (name + ".csv");
    auto r = run_lra("sweep " + quote(path.string()) + " --out " + quote(csv.string()));
    EXPECT_NE(r.status, 0) << cases[i].yaml;
    EXPECT_NE(r.output.find(cases[i].expect), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(path.string()), std::string::npos) << r.output;
    EXPECT_FALSE(std::filesystem::exists(csv)) << "no CSV for a rejected config";
  }
}

}  // namespace
}  // namespace lra::test
