// scripts/compare_anchor.py: its built-in self-test, and a real `lra sweep` CSV against an
// anchor file of the same shapes, with the ratio recomputed here from both CSVs.
#include <gtest/gtest.h>

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
  return run_command("python3 " +
                     quote((fs::path(LRA_SOURCE_DIR) / "scripts" / "compare_anchor.py").string()) +
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

}  // namespace
}  // namespace lra::test
