// The Python plotting/table scripts on CSVs written by `lra` in the test (headless
// matplotlib): they produce non-trivial files and reject CSVs of another schema.
#include <gtest/gtest.h>

#include <filesystem>

#include "cli_util.h"

namespace lra::test {
namespace {

namespace fs = std::filesystem;

bool have_python() {
  if (fs::exists(venv_python())) return true;
  std::fprintf(stderr, "skipping: %s is missing (run scripts/install_deps.sh)\n", venv_python().c_str());
  return false;
}

RunResult run_script(const std::string& script, const std::string& args) {
  return run_command("MPLBACKEND=Agg " + quote(venv_python().string()) + " " +
                     quote((source_dir() / "scripts" / script).string()) + " " + args);
}

// Sweep CSV with two backends over three lengths, both passes.
fs::path make_sweep_csv(const fs::path& dir) {
  write_file(dir / "sweep.yaml", R"(batch: [1]
heads: [2]
head_dim: [8]
seq_len: [16, 32, 64]
passes: [fwd, fwd+bwd]
backends: [{type: softmax}, {type: nystrom, landmarks: 4}]
warmup: 0
min_reps: 2
min_seconds: 0
)");
  auto csv = dir / "sweep.csv";
  auto r = run_lra("sweep " + quote((dir / "sweep.yaml").string()) + " --out " + quote(csv.string()));
  EXPECT_EQ(r.status, 0) << r.output;
  return csv;
}

TEST(Scripts, PlotScalingDrawsSweepAndAnchorsAndSummarises) {
  if (!have_python()) GTEST_SKIP() << "no .venv/bin/python";
  auto dir = scratch_dir("plot_scaling");
  auto csv = make_sweep_csv(dir);
  // An anchor file in the /work/shared/anchors format for the same shape.
  write_file(dir / "anchor.csv",
             "backend,batch,heads,head_dim,seq_len,pass,time_ms_median,time_ms_p10,time_ms_p90,"
             "peak_extra_bytes,status\n"
             "ref,1,2,8,16,fwd,0.01,0.01,0.02,4096,ok\nref,1,2,8,64,fwd,0.05,0.04,0.06,65536,ok\n");
  auto out = dir / "plots";
  auto r = run_script("plot_scaling.py", quote(csv.string()) + " --anchors " + quote((dir / "anchor.csv").string()) +
                                              " --out " + quote(out.string()) + " --summary");
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* name : {"scaling_time.png", "scaling_memory.png"}) {
    ASSERT_TRUE(fs::exists(out / name)) << name;
    EXPECT_GT(fs::file_size(out / name), 10000u) << name;
  }
  EXPECT_NE(r.output.find("| nystrom (landmarks=4) |"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("N=64"), std::string::npos) << r.output;
}

TEST(Scripts, MakeTableRendersReproduceCsvAsMarkdownAndLatex) {
  if (!have_python()) GTEST_SKIP() << "no .venv/bin/python";
  auto dir = scratch_dir("make_table");
  write_file(dir / "table.yaml", R"(name: tiny
kind: efficiency
measure: {batch: 1, heads: 1, head_dim: 8, warmup: 0, min_reps: 1, min_seconds: 0}
columns: [{name: "16", seq_len: 16}, {name: "32", seq_len: 32}]
rows:
  - {name: exact, attention: {type: softmax}, published: {"16": {memory_mb: 7, time_ms: 1}}}
  - {name: nys, attention: {type: nystrom, landmarks: 4}}
)");
  auto csv = dir / "t.csv";
  auto r = run_lra("reproduce " + quote((dir / "table.yaml").string()) + " --out " + quote(csv.string()));
  ASSERT_EQ(r.status, 0) << r.output;
  auto md = run_script("make_table.py", quote(csv.string()));
  ASSERT_EQ(md.status, 0) << md.output;
  EXPECT_NE(md.output.find("| exact |"), std::string::npos) << md.output;
  EXPECT_NE(md.output.find("| nys |"), std::string::npos) << md.output;
  EXPECT_NE(md.output.find(" / 7 |"), std::string::npos) << md.output;
  auto tex = run_script("make_table.py", quote(csv.string()) + " --format latex --out " + quote((dir / "t.tex").string()));
  ASSERT_EQ(tex.status, 0) << tex.output;
  ASSERT_TRUE(fs::exists(dir / "t.tex"));
  EXPECT_GT(fs::file_size(dir / "t.tex"), 200u);
}

TEST(Scripts, EveryScriptRejectsACsvOfAnotherSchema) {
  if (!have_python()) GTEST_SKIP() << "no .venv/bin/python";
  auto dir = scratch_dir("bad_schema");
  auto csv = make_sweep_csv(dir);
  struct Case {
    const char* script;
    std::string args, expect;
  };
  // A sweep CSV is not a reproduce, approx or metrics CSV, and a reproduce-like CSV is
  // not a sweep CSV.
  write_file(dir / "other.csv", "table,row,column\nt,r,c\n");
  std::vector<Case> cases{
      {"make_table.py", quote(csv.string()), "not an lra reproduce CSV"},
      {"plot_approx.py", quote(csv.string()) + " --out " + quote(dir.string()), "not an lra approx CSV"},
      {"plot_training.py", quote(csv.string()) + " --out " + quote(dir.string()), "not an lra training metrics CSV"},
      {"plot_scaling.py", quote((dir / "other.csv").string()) + " --out " + quote(dir.string()), "not an lra sweep CSV"},
      {"plot_scaling.py", quote((dir / "missing.csv").string()), "no such file"},
  };
  for (const auto& c : cases) {
    auto r = run_script(c.script, c.args);
    EXPECT_EQ(r.status, 2) << c.script << ": " << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.script << ": " << r.output;
    EXPECT_EQ(r.output.find("Traceback"), std::string::npos) << r.output;
  }
}

TEST(Scripts, PlotApproxDrawsErrorVsSize) {
  if (!have_python()) GTEST_SKIP() << "no .venv/bin/python";
  auto help = run_lra("help approx");
  if (help.status != 0) GTEST_SKIP() << "this build has no `lra approx`";
  auto dir = scratch_dir("plot_approx");
  write_file(dir / "approx.yaml", R"(backends:
  - {type: nystrom, landmarks: 4}
  - {type: nystrom, landmarks: 8}
  - {type: nystrom, landmarks: 16}
  - {type: linear}
seq_len: [32, 64]
batch: 1
heads: 1
head_dim: 8
seeds: [0, 1]
)");
  auto csv = dir / "approx.csv";
  auto r = run_lra("approx " + quote((dir / "approx.yaml").string()) + " --out " + quote(csv.string()));
  if (r.status != 0) GTEST_SKIP() << "lra approx rejected the test config (its schema differs): " << r.output;
  auto p = run_script("plot_approx.py", quote(csv.string()) + " --out " + quote(dir.string()) + " --summary");
  ASSERT_EQ(p.status, 0) << p.output;
  ASSERT_TRUE(fs::exists(dir / "approx_error.png"));
  EXPECT_GT(fs::file_size(dir / "approx_error.png"), 10000u);
  EXPECT_NE(p.output.find("landmarks=16"), std::string::npos) << p.output;
}

}  // namespace
}  // namespace lra::test
