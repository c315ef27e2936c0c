// `lra reproduce` of an accuracy table with a tiny training config: shards + merge,
// resume, ours = the run's own test accuracy; plot_training.py on the runs' metrics.csv.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "cli_util.h"
#include "core/csv.h"

namespace lra::test {
namespace {

namespace fs = std::filesystem;

// Test accuracy (fraction) of the `test` row of a run's metrics.csv.
double test_accuracy_of(const fs::path& run_dir) {
  core::CsvTable t = core::read_csv((run_dir / "metrics.csv").string());
  for (const auto& row : t.rows)
    if (row[t.column("split")] == "test") return std::stod(row[t.column("accuracy")]);
  ADD_FAILURE() << "no test row in " << (run_dir / "metrics.csv");
  return std::nan("");
}

TEST(ReproduceTrain, TinyAccuracyTableShardsMergesAndResumes) {
  auto dir = scratch_dir("accuracy");
  auto gen = run_lra("data generate listops --out " + quote((dir / "listops").string()) +
                     " --seed 0 --train 48 --val 16 --test 16");
  ASSERT_EQ(gen.status, 0) << gen.output;
  write_file(dir / "listops.yaml", cat({"task: {name: listops, data_dir: ", (dir / "listops").string(),
                                        ", max_len: 64}\n"}) +
                                       std::string("model: {dim: 16, hidden: 32, heads: 2, head_dim: 8, layers: 1, dropout: 0.0}\n"
                                       "attention: {type: softmax}\n"
                                       "train: {batch: 8, lr: 1.0e-3, warmup: 1, steps: 4, eval_every: 2, seed: 0}\n"));
  write_file(dir / "table.yaml", R"(name: tiny_accuracy
kind: accuracy
title: tiny
seeds: [0, 1]
set: [train.steps=4]
columns:
  - {name: listops, config: listops.yaml}
rows:
  - name: exact
    attention: {type: softmax}
    published: {listops: 37.1}
  - name: nys
    attention: {type: nystrom, landmarks: 4}
)");
  const std::string table = quote((dir / "table.yaml").string());
  const std::string runs = quote((dir / "runs").string());
  for (int i = 0; i < 2; ++i) {
    auto r = run_lra("reproduce " + table + " --shard " + std::to_string(i) + "/2 --runs " + runs + " --out " +
                     quote((dir / cat({"s", std::to_string(i), ".csv"})).string()));
    ASSERT_EQ(r.status, 0) << r.output;
  }
  auto merged = dir / "merged.csv";
  auto m = run_lra("merge " + quote(merged.string()) + " " + quote((dir / "s0.csv").string()) + " " +
                   quote((dir / "s1.csv").string()));
  ASSERT_EQ(m.status, 0) << m.output;
  core::CsvTable t = core::read_csv(merged.string());
  ASSERT_EQ(t.rows.size(), 4u);
  std::set<std::string> cells;
  for (const auto& row : t.rows) {
    cells.insert(row[t.column("row")] + ":" + row[t.column("seed")]);
    EXPECT_EQ(row[t.column("metric")], "test_accuracy");
    EXPECT_EQ(row[t.column("status")], "ok");
    fs::path run_dir = row[t.column("run_dir")];
    EXPECT_EQ(run_dir, dir / "runs" / "tiny_accuracy" / row[t.column("row")] / "listops" /
                           cat({"seed", row[t.column("seed")]}));
    ASSERT_TRUE(fs::exists(run_dir / "metrics.csv"));
    EXPECT_NEAR(std::stod(row[t.column("ours")]), 100.0 * test_accuracy_of(run_dir), 1e-6);
    EXPECT_EQ(row[t.column("steps")], "4");
    if (row[t.column("row")] == "exact") {
      EXPECT_EQ(std::stod(row[t.column("theirs")]), 37.1);
    } else {
      EXPECT_TRUE(row[t.column("theirs")].empty());
    }
  }
  EXPECT_EQ(cells, (std::set<std::string>{"exact:0", "exact:1", "nys:0", "nys:1"}));

  auto again = run_lra("reproduce " + table + " --runs " + runs + " --out " + quote(merged.string()));
  ASSERT_EQ(again.status, 0) << again.output;
  EXPECT_NE(again.output.find("0 to run"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("| exact |"), std::string::npos) << again.output;

  auto dup = run_lra("merge " + quote((dir / "dup.csv").string()) + " " + quote(merged.string()) + " " +
                     quote((dir / "s0.csv").string()));
  EXPECT_NE(dup.status, 0);
  EXPECT_NE(dup.output.find("duplicate"), std::string::npos) << dup.output;

  if (!fs::exists(venv_python())) GTEST_SKIP() << "no .venv/bin/python for plot_training.py";
  auto plot = run_command("MPLBACKEND=Agg " + quote(venv_python().string()) + " " +
                          quote((source_dir() / "scripts" / "plot_training.py").string()) + " exact=" +
                          quote((dir / "runs/tiny_accuracy/exact/listops/seed0").string()) + " nys=" +
                          quote((dir / "runs/tiny_accuracy/nys/listops/seed0").string()) + " --out " +
                          quote(dir.string()) + " --summary");
  ASSERT_EQ(plot.status, 0) << plot.output;
  ASSERT_TRUE(fs::exists(dir / "training.png"));
  EXPECT_GT(fs::file_size(dir / "training.png"), 10000u);
  EXPECT_NE(plot.output.find("| nys | 4 |"), std::string::npos) << plot.output;
}

}  // namespace
}  // namespace lra::test
