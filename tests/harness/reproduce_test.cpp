// `lra reproduce` and `lra merge` through the binary: an efficiency table run in two
// shards, merged, resumed; duplicate and schema-mismatch merges rejected; bad tables.
#include <gtest/gtest.h>

#include <set>

#include "cli_util.h"
#include "core/csv.h"

namespace lra::test {
namespace {

const char* kTinyTable = R"(name: tiny_efficiency
kind: efficiency
title: tiny
source: made up for the test
measure: {device: cpu, dtype: f32, batch: 1, heads: 2, head_dim: 8, pass: fwd, warmup: 0, min_reps: 2, min_seconds: 0}
columns:
  - {name: "16", seq_len: 16}
  - {name: "32", seq_len: 32}
rows:
  - name: exact
    attention: {type: softmax}
    published: {"16": {memory_mb: 1.5, time_ms: 0.25}, "32": {memory_mb: 3, time_ms: 0.5}}
  - name: nys
    attention: {type: nystrom, landmarks: 4}
    published: {"32": {memory_mb: 2, time_ms: 0.4}}
)";

using Cells = std::set<std::string>;

Cells cells_of(const std::filesystem::path& csv) {
  core::CsvTable t = core::read_csv(csv.string());
  Cells cells;
  for (const auto& row : t.rows)
    cells.insert(row[t.column("row")] + ":" + row[t.column("column")] + ":" + row[t.column("metric")]);
  return cells;
}

TEST(Reproduce, ShardsAreDisjointAndMergeToTheWholeTable) {
  auto dir = scratch_dir("shards");
  write_file(dir / "table.yaml", kTinyTable);
  const std::string table = quote((dir / "table.yaml").string());
  std::vector<std::filesystem::path> shards{dir / "s0.csv", dir / "s1.csv", dir / "s2.csv"};
  for (int i = 0; i < 3; ++i) {
    auto r = run_lra("reproduce " + table + " --shard " + std::to_string(i) + "/3 --out " +
                     quote(shards[static_cast<std::size_t>(i)].string()));
    ASSERT_EQ(r.status, 0) << r.output;
  }
  Cells all;
  std::size_t total = 0;
  for (const auto& s : shards) {
    Cells c = cells_of(s);
    total += c.size();
    all.insert(c.begin(), c.end());
  }
  EXPECT_EQ(total, all.size()) << "shards overlap";
  Cells expected;
  for (std::string r : {"exact", "nys"})
    for (std::string c : {"16", "32"})
      for (std::string m : {"memory_mb", "time_ms"}) expected.insert(r + ":" + c + ":" + m);
  EXPECT_EQ(all, expected);

  auto merged = dir / "merged.csv";
  auto m = run_lra("merge " + quote(merged.string()) + " " + quote(shards[0].string()) + " " +
                   quote(shards[1].string()) + " " + quote(shards[2].string()));
  ASSERT_EQ(m.status, 0) << m.output;
  EXPECT_EQ(cells_of(merged), expected);

  core::CsvTable t = core::read_csv(merged.string());
  for (const auto& row : t.rows) {
    EXPECT_EQ(row[t.column("status")], "ok");
    double ours = std::stod(row[t.column("ours")]);
    EXPECT_GT(ours, 0.0);
    const std::string theirs = row[t.column("theirs")];
    if (row[t.column("row")] == "exact" && row[t.column("column")] == "32" && row[t.column("metric")] == "memory_mb") {
      EXPECT_EQ(std::stod(theirs), 3.0);
      EXPECT_NEAR(std::stod(row[t.column("delta")]), ours - 3.0, 1e-6);
      // softmax at N = 32 (the fused CPU op) holds at least a 12-row tile of f32 scores.
      EXPECT_GE(ours * 1024 * 1024, 12.0 * 32 * 4);
    }
    if (row[t.column("row")] == "nys" && row[t.column("column")] == "16") {
      EXPECT_TRUE(theirs.empty());
    }
  }

  // Resume: every cell is present, nothing runs, the Markdown table shows ours / theirs.
  auto again = run_lra("reproduce " + table + " --out " + quote(merged.string()));
  ASSERT_EQ(again.status, 0) << again.output;
  EXPECT_NE(again.output.find("0 to run"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("| exact |"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find(" / 3 |"), std::string::npos) << again.output;
  EXPECT_EQ(core::read_csv(merged.string()).rows.size(), expected.size());
}

TEST(Reproduce, ResumeRunsOnlyMissingCellsAndCellsSelects) {
  auto dir = scratch_dir("cells");
  write_file(dir / "table.yaml", kTinyTable);
  const std::string table = quote((dir / "table.yaml").string());
  auto csv = dir / "out.csv";
  auto r = run_lra("reproduce " + table + " --cells 'nys:*' --out " + quote(csv.string()));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(cells_of(csv), (Cells{"nys:16:memory_mb", "nys:16:time_ms", "nys:32:memory_mb", "nys:32:time_ms"}));
  auto dry = run_lra("reproduce " + table + " --dry-run --out " + quote(csv.string()));
  ASSERT_EQ(dry.status, 0) << dry.output;
  EXPECT_NE(dry.output.find("nys:16 seed=0 done"), std::string::npos) << dry.output;
  EXPECT_NE(dry.output.find("exact:32 seed=0 todo"), std::string::npos) << dry.output;
  auto rest = run_lra("reproduce " + table + " --out " + quote(csv.string()));
  ASSERT_EQ(rest.status, 0) << rest.output;
  EXPECT_NE(rest.output.find("2 to run"), std::string::npos) << rest.output;
  EXPECT_EQ(core::read_csv(csv.string()).rows.size(), 8u);
  auto bad = run_lra("reproduce " + table + " --cells 'nope:16' --out " + quote(csv.string()));
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("no row 'nope'"), std::string::npos) << bad.output;
  auto bad_shard = run_lra("reproduce " + table + " --shard 3/3 --out " + quote(csv.string()));
  EXPECT_NE(bad_shard.status, 0);
  EXPECT_NE(bad_shard.output.find("--shard"), std::string::npos) << bad_shard.output;
}

TEST(Merge, DuplicatesAndSchemaMismatchesAreErrorsNamingTheFiles) {
  auto dir = scratch_dir("merge");
  write_file(dir / "table.yaml", kTinyTable);
  auto a = dir / "a.csv";
  auto r = run_lra("reproduce " + quote((dir / "table.yaml").string()) + " --cells 'exact:16' --out " +
                   quote(a.string()));
  ASSERT_EQ(r.status, 0) << r.output;
  auto b = dir / "b.csv";
  std::filesystem::copy_file(a, b);
  auto dup = run_lra("merge " + quote((dir / "m.csv").string()) + " " + quote(a.string()) + " " + quote(b.string()));
  EXPECT_NE(dup.status, 0);
  EXPECT_NE(dup.output.find("duplicate"), std::string::npos) << dup.output;
  EXPECT_NE(dup.output.find(a.string()), std::string::npos) << dup.output;
  EXPECT_NE(dup.output.find(b.string()), std::string::npos) << dup.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "m.csv"));

  auto other = dir / "other.csv";
  write_file(other, "backend,params\nsoftmax,\n");
  auto mismatch = run_lra("merge " + quote((dir / "m.csv").string()) + " " + quote(a.string()) + " " +
                          quote(other.string()));
  EXPECT_NE(mismatch.status, 0);
  EXPECT_NE(mismatch.output.find("schema mismatch"), std::string::npos) << mismatch.output;
  EXPECT_NE(mismatch.output.find(other.string()), std::string::npos) << mismatch.output;

  // An existing output is kept unless --force.
  write_file(dir / "exists.csv", "x\n");
  auto exists = run_lra("merge " + quote((dir / "exists.csv").string()) + " " + quote(a.string()));
  EXPECT_NE(exists.status, 0);
  auto forced = run_lra("merge --force " + quote((dir / "exists.csv").string()) + " " + quote(a.string()));
  ASSERT_EQ(forced.status, 0) << forced.output;
  EXPECT_EQ(core::read_csv((dir / "exists.csv").string()).rows.size(), 2u);
}

TEST(Reproduce, BadTablesAreRejected) {
  auto dir = scratch_dir("bad_tables");
  struct Case {
    std::string yaml, expect;
  };
  const std::string base = "name: t\nkind: efficiency\nmeasure: {batch: 1, heads: 1, head_dim: 4}\n"
                           "columns: [{name: a, seq_len: 8}]\n";
  std::vector<Case> cases{
      {base + "rows: [{name: r, attention: {type: softmax}, published: {b: {time_ms: 1}}}]\n", "'b'"},
      {base + "rows: [{name: r, attention: {type: softmax}, published: {a: {speed: 1}}}]\n", "'speed'"},
      {base + "rows: [{name: r, attention: {type: softmax}}]\ncolour: red\n", "'colour'"},
      {base + "rows: [{name: r}]\n", "attention"},
      {"name: t\nkind: speed\ncolumns: []\nrows: []\n", "kind"},
      {"name: t\nkind: accuracy\ncolumns: [{name: a, config: x.yaml, max_len: 3}]\nrows: []\n", "'max_len'"},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    std::string name = "t";
    name += std::to_string(i);
    auto path = dir / (name + ".yaml");
    write_file(path, cases[i].yaml);
    auto r = run_lra("reproduce " + quote(path.string()) + " --out " + quote((dir / "o.csv").string()));
    EXPECT_NE(r.status, 0) << cases[i].yaml;
    EXPECT_NE(r.output.find(cases[i].expect), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(path.string()), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace lra::test
