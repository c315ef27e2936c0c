// scripts/compare_anchor.py: its built-in self-test, and real `lra sweep` CSVs (an attention
// grid and training steps) against anchor files of the same shapes, with the ratios
// recomputed here from both CSVs.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "cli_util.h"
#include "core/csv.h"

namespace lra::test {
namespace {

namespace fs = std::filesystem;

bool have_python3() {
  if (run_command("python3 -c 'import csv, argparse'").status == 0) return true;
  std::fprintf(stderr, "skipping: python3 is missing\n");
  return false;
}

RunResult compare_anchor(const std::string& args) {
  return run_command("python3 " + quote((source_dir() / "scripts" / "compare_anchor.py").string()) +
                     " " + args);
}

TEST(CompareAnchor, SelfTestPasses) {
  if (!have_python3()) GTEST_SKIP() << "no python3";
  auto r = compare_anchor("--self-test");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("self-test passed"), std::string::npos) << r.output;
}

TEST(CompareAnchor, RatiosOfASweepAgainstAnAnchorFile) {
  if (!have_python3()) GTEST_SKIP() << "no python3";
  auto dir = scratch_dir("compare_anchor");
  write_file(dir / "sweep.yaml", R"(batch: [1]
heads: [2]
head_dim: [8]
seq_len: [16, 32]
passes: [fwd]
backends: [{type: linear}, {type: linformer, k: 256}]
warmup: 0
min_reps: 2
min_seconds: 0
)");
  auto csv = dir / "sweep.csv";
  auto r =
      run_lra("sweep " + quote((dir / "sweep.yaml").string()) + " --out " + quote(csv.string()));
  ASSERT_EQ(r.status, 0) << r.output;
  core::CsvTable t = core::read_csv(csv.string());
  double linear_ms = 0;
  for (const auto& row : t.rows)
    if (row[t.column("backend")] == "linear" && row[t.column("seq_len")] == "32")
      linear_ms = std::stod(row[t.column("time_ms_median")]);
  ASSERT_GT(linear_ms, 0);
  // The anchor takes 4x lra's time at N = 32: ratio 0.25 (target <= 0.5 met).
  write_file(dir / "anchor.csv",
             "backend,batch,heads,head_dim,seq_len,pass,time_ms_median,time_ms_p10,time_ms_p90,"
             "peak_extra_bytes,status\n"
             "linear_mlpen,1,2,8,32,fwd," +
                 core::csv_number(4 * linear_ms) +
                 ",0,0,1e12,ok\n"
                 "linformer_mlpen,1,2,8,16,fwd,,,,,oom\n");
  auto c =
      compare_anchor(quote(csv.string()) + " --anchors " + quote((dir / "anchor.csv").string()));
  ASSERT_EQ(c.status, 0) << c.output;
  EXPECT_NE(c.output.find("| linear | linear_mlpen | 1,2,8 | 32 | fwd |"), std::string::npos)
      << c.output;
  EXPECT_NE(c.output.find("| 0.250 | <= 0.5 | met |"), std::string::npos) << c.output;
  EXPECT_NE(c.output.find("| linformer-256 | linformer_mlpen | 1,2,8 | 16 | fwd |"),
            std::string::npos)
      << c.output;
  EXPECT_NE(c.output.find("no anchor time"), std::string::npos) << c.output;
  EXPECT_NE(c.output.find("time targets met: 1/1"), std::string::npos) << c.output;
  // --strict fails when a target is missed: here the memory target (1e12 bytes) is met,
  // so strict passes; an anchor 10x faster makes it fail.
  EXPECT_EQ(compare_anchor(quote(csv.string()) + " --strict --anchors " +
                           quote((dir / "anchor.csv").string()))
                .status,
            0);
  write_file(dir / "fast.csv",
             "backend,batch,heads,head_dim,seq_len,pass,time_ms_median,time_ms_p10,time_ms_p90,"
             "peak_extra_bytes,status\n"
             "linear_mlpen,1,2,8,32,fwd," +
                 core::csv_number(linear_ms / 10) + ",0,0,1e12,ok\n");
  auto strict = compare_anchor(quote(csv.string()) + " --strict --anchors " +
                               quote((dir / "fast.csv").string()));
  EXPECT_EQ(strict.status, 1) << strict.output;
  EXPECT_NE(strict.output.find("missed"), std::string::npos) << strict.output;
  // A CSV of another schema is rejected by name.
  auto bad = compare_anchor(quote((dir / "anchor.csv").string()));
  EXPECT_EQ(bad.status, 2) << bad.output;
  EXPECT_NE(bad.output.find("not an lra sweep CSV"), std::string::npos) << bad.output;
}

TEST(CompareAnchor, TrainStepSweepAgainstATrainStepAnchorFile) {
  if (!have_python3()) GTEST_SKIP() << "no python3";
  auto dir = scratch_dir("compare_anchor_train_step");
  write_file(dir / "sweep.yaml", R"(kind: train_step
tasks:
  - {task: listops, batch: 2, seq_len: 64}
  - {task: image, batch: 2, seq_len: 64}
attentions: {linear: {type: linear}}
warmup: 0
reps: 2
ceilings: {gemm_flops_per_s: 1.0e11, copy_bytes_per_s: 1.0e10}
)");
  auto csv = dir / "train_step.csv";
  auto r =
      run_lra("sweep " + quote((dir / "sweep.yaml").string()) + " --out " + quote(csv.string()));
  ASSERT_EQ(r.status, 0) << r.output;
  core::CsvTable t = core::read_csv(csv.string());
  ASSERT_EQ(t.rows.size(), 2u);
  double listops_ms = 0, predicted_ms = 0;
  for (const auto& row : t.rows)
    if (row[t.column("task")] == "listops") {
      listops_ms = std::stod(row[t.column("step_ms_median")]);
      predicted_ms = std::stod(row[t.column("predicted_ms")]);
    }
  ASSERT_GT(listops_ms, 0);
  ASSERT_GT(predicted_ms, 0);
  // The anchor takes 4x lra's ListOps step (ratio 0.25: the <= 1/3 target met); Image has
  // no target.
  const std::string header =
      "task,attention,batch,seq_len,step_ms_median,step_ms_p10,step_ms_p90,tokens_per_s,"
      "peak_bytes\n";
  write_file(dir / "anchor.csv", header + "listops,linear,2,64," +
                                     core::csv_number(4 * listops_ms) + ",0,0,0,1e12\n" +
                                     "image,linear,2,64,1000,0,0,0,1e12\n");
  auto c = compare_anchor(quote(csv.string()) + " --strict --anchors " +
                          quote((dir / "anchor.csv").string()));
  ASSERT_EQ(c.status, 0) << c.output;
  EXPECT_NE(c.output.find("| listops | linear | 2 x 64 | fp32 |"), std::string::npos) << c.output;
  EXPECT_NE(c.output.find("| 0.250 | <= 1/3 | met |"), std::string::npos) << c.output;
  // Beside it: the predicted time and measured / predicted, from the same CSV values.
  char predicted_cells[96];
  std::snprintf(predicted_cells, sizeof predicted_cells, "| met | %.3f | %.2f |", predicted_ms,
                listops_ms / predicted_ms);
  EXPECT_NE(c.output.find(predicted_cells), std::string::npos)
      << predicted_cells << " in " << c.output;
  EXPECT_NE(c.output.find("| image | linear | 2 x 64 |"), std::string::npos) << c.output;
  EXPECT_NE(c.output.find("met: 1/1"), std::string::npos) << c.output;
  // An anchor twice as fast as lra: the target is missed and --strict fails.
  write_file(dir / "fast.csv",
             header + "listops,linear,2,64," + core::csv_number(listops_ms / 2) + ",0,0,0,1e12\n");
  auto strict = compare_anchor(quote(csv.string()) + " --strict --anchors " +
                               quote((dir / "fast.csv").string()));
  EXPECT_EQ(strict.status, 1) << strict.output;
  EXPECT_NE(strict.output.find("| 2.000 | <= 1/3 | missed |"), std::string::npos) << strict.output;
  // An attention anchor file is not a train-step anchor: rejected by name.
  write_file(dir / "attention_anchor.csv",
             "backend,batch,heads,head_dim,seq_len,pass,time_ms_median,time_ms_p10,time_ms_p90,"
             "peak_extra_bytes,status\nlinear_mlpen,1,2,8,32,fwd,1,0,0,1,ok\n");
  auto bad = compare_anchor(quote(csv.string()) + " --anchors " +
                            quote((dir / "attention_anchor.csv").string()));
  EXPECT_EQ(bad.status, 2) << bad.output;
  EXPECT_NE(bad.output.find("not a train-step anchor CSV"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace lra::test
