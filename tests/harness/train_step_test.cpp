// `lra sweep` with `kind: train_step` through the binary, on the CPU: the anchor's columns
// with plausible numbers, the prediction scaling with the batch, oom rows, resume after a
// kill, bad configs named by file and key, the shipped CPU config.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "cli_util.h"
#include "core/csv.h"

namespace lra::test {
namespace {

namespace fs = std::filesystem;

// Two batch sizes of one task (the prediction must scale with the batch), three backends.
const char* kTinyTrainStep = R"(kind: train_step
device: cpu
dtype: f32
tasks:
  - {task: listops, batch: 2, seq_len: 128}
  - {task: listops, label: listops8, batch: 8, seq_len: 128}
attentions:
  softmax: {type: softmax}
  nystrom-8: {type: nystrom, landmarks: 8}
  linear: {type: linear}
warmup: 1
reps: 3
ceilings: {gemm_flops_per_s: 1.0e11, copy_bytes_per_s: 1.0e10}
seed: 4
)";

double num(const core::CsvTable& t, const std::vector<std::string>& row, const char* column) {
  const std::string& text = row[t.column(column)];
  EXPECT_FALSE(text.empty()) << column;
  return text.empty() ? std::nan("") : std::stod(text);
}

std::string cell_of(const core::CsvTable& t, const std::vector<std::string>& row) {
  return row[t.column("task")] + "|" + row[t.column("attention")];
}

std::set<std::string> expected_cells() {
  std::set<std::string> cells;
  for (std::string task : {"listops", "listops8"})
    for (std::string attention : {"softmax", "nystrom-8", "linear"})
      cells.insert(task + "|" + attention);
  return cells;
}

RunResult run_sweep(const fs::path& config, const fs::path& csv, const std::string& env = "") {
  return run_lra("sweep " + quote(config.string()) + " --out " + quote(csv.string()), env);
}

TEST(TrainStepSweep, TinyCellsWriteTheAnchorColumnsWithPlausibleNumbers) {
  auto dir = scratch_dir("train_step_tiny");
  write_file(dir / "sweep.yaml", kTinyTrainStep);
  auto csv = dir / "out.csv";
  auto r = run_sweep(dir / "sweep.yaml", csv);
  ASSERT_EQ(r.status, 0) << r.output;
  core::CsvTable t = core::read_csv(csv.string());
  // The anchor file's columns come first, in its order.
  const std::vector<std::string> anchor{"task",        "attention",      "batch",
                                        "seq_len",     "step_ms_median", "step_ms_p10",
                                        "step_ms_p90", "tokens_per_s",   "peak_bytes"};
  ASSERT_GE(t.columns.size(), anchor.size());
  EXPECT_EQ(std::vector<std::string>(t.columns.begin(), t.columns.begin() + 9), anchor);
  for (const char* c :
       {"predicted_ms", "flops", "traffic_bytes", "device", "params", "seed", "commit", "status"})
    EXPECT_NO_THROW(t.column(c)) << c;
  ASSERT_EQ(t.rows.size(), 6u);

  std::set<std::string> cells;
  std::map<std::string, double> predicted, flops;
  for (const auto& row : t.rows) {
    const std::string cell = cell_of(t, row);
    cells.insert(cell);
    ASSERT_EQ(row[t.column("status")], "ok") << row[t.column("reason")];
    EXPECT_EQ(row[t.column("device")], "cpu");
    EXPECT_EQ(row[t.column("dtype")], "f32");
    EXPECT_EQ(row[t.column("matmul_precision")], "fp32");
    EXPECT_EQ(row[t.column("seed")], "4");
    EXPECT_EQ(row[t.column("reps")], "3");
    EXPECT_EQ(row[t.column("warmup")], "1");
    EXPECT_FALSE(row[t.column("commit")].empty());
    EXPECT_EQ(row[t.column("seq_len")], "128");
    const double batch = num(t, row, "batch");
    EXPECT_EQ(batch, row[t.column("task")] == "listops" ? 2 : 8);
    const double median = num(t, row, "step_ms_median");
    EXPECT_GT(median, 0.0);
    EXPECT_LE(num(t, row, "step_ms_p10"), median);
    EXPECT_LE(median, num(t, row, "step_ms_p90"));
    // tokens/s is batch * seq_len over the median step.
    const double tokens = batch * 128 / (median * 1e-3);
    EXPECT_NEAR(num(t, row, "tokens_per_s"), tokens, 1e-6 * tokens);
    // The allocator held at least the parameters, their gradients and both AdamW moments.
    const double parameters = num(t, row, "parameters");
    EXPECT_GT(parameters, 64 * 64 * 4 * 2);  // the Wq, Wk, Wv, Wo of two layers
    EXPECT_GE(num(t, row, "peak_bytes"), 4 * 4 * parameters);
    // The estimate of the peak is within 2x of the allocator's measured peak.
    const double ratio = num(t, row, "analytic_bytes") / num(t, row, "peak_bytes");
    EXPECT_GT(ratio, 0.5) << cell;
    EXPECT_LT(ratio, 2.5) << cell;
    // Random labels over 10 classes from a fresh model: the loss is near ln 10.
    EXPECT_NEAR(num(t, row, "loss"), std::log(10.0), 0.3) << cell;
    EXPECT_EQ(row[t.column("ceilings")], "custom");
    EXPECT_GT(num(t, row, "predicted_ms"), 0.0);
    predicted[cell] = num(t, row, "predicted_ms");
    flops[cell] = num(t, row, "flops");
    // The prediction is at least each ceiling's time for the whole step.
    EXPECT_GE(predicted[cell] * 1e-3 * (1 + 1e-9), flops[cell] / 1e11) << cell;
    EXPECT_GE(predicted[cell] * 1e-3 * (1 + 1e-9), num(t, row, "traffic_bytes") / 1e10) << cell;
  }
  EXPECT_EQ(cells, expected_cells());
  EXPECT_EQ(t.rows[1][t.column("params")], "landmarks=8");
  // Four times the batch: at most four times the work (the optimizer's share is fixed), and
  // more than three times at these sizes (the activations dominate).
  for (std::string attention : {"softmax", "nystrom-8", "linear"}) {
    double p = predicted["listops8|" + attention] / predicted["listops|" + attention];
    double f = flops["listops8|" + attention] / flops["listops|" + attention];
    EXPECT_GT(p, 3.0) << attention;
    EXPECT_LE(p, 4.0) << attention;
    EXPECT_GT(f, 3.0) << attention;
    EXPECT_LE(f, 4.0) << attention;
  }
  // Exact attention does more arithmetic than either linear-cost backend.
  EXPECT_GT(flops["listops8|softmax"], flops["listops8|nystrom-8"]);
  EXPECT_GT(flops["listops8|softmax"], flops["listops8|linear"]);
}

TEST(TrainStepSweep, NoCeilingsLeavesThePredictionEmpty) {
  auto dir = scratch_dir("train_step_no_ceilings");
  write_file(dir / "sweep.yaml", R"(kind: train_step
tasks: [{task: pathfinder, label: pathfinder32, batch: 2, seq_len: 64}]
attentions: {linear: {type: linear}}
warmup: 0
reps: 2
)");
  auto csv = dir / "out.csv";
  auto r = run_sweep(dir / "sweep.yaml", csv);
  ASSERT_EQ(r.status, 0) << r.output;
  core::CsvTable t = core::read_csv(csv.string());
  ASSERT_EQ(t.rows.size(), 1u);
  const auto& row = t.rows[0];
  EXPECT_EQ(row[t.column("status")], "ok") << row[t.column("reason")];
  EXPECT_EQ(row[t.column("task")], "pathfinder32");
  EXPECT_EQ(row[t.column("num_classes")], "2");
  EXPECT_EQ(row[t.column("vocab")], "257");
  EXPECT_EQ(row[t.column("ceilings")], "none");
  EXPECT_TRUE(row[t.column("predicted_ms")].empty());
  EXPECT_FALSE(row[t.column("flops")].empty());
  EXPECT_NEAR(std::stod(row[t.column("loss")]), std::log(2.0), 0.2);
}

TEST(TrainStepSweep, CellsOverTheMemoryLimitAreOomRows) {
  auto dir = scratch_dir("train_step_oom");
  write_file(dir / "sweep.yaml", std::string(kTinyTrainStep) + "memory_limit: 4MiB\n");
  auto csv = dir / "out.csv";
  auto r = run_sweep(dir / "sweep.yaml", csv);
  ASSERT_EQ(r.status, 0) << r.output;
  core::CsvTable t = core::read_csv(csv.string());
  ASSERT_EQ(t.rows.size(), 6u);
  int oom = 0;
  for (const auto& row : t.rows) {
    const std::string status = row[t.column("status")];
    const double estimate = std::stod(row[t.column("analytic_bytes")]);
    if (estimate > 4.0 * 1024 * 1024) {
      ++oom;
      EXPECT_EQ(status, "oom") << cell_of(t, row);
      EXPECT_NE(row[t.column("reason")].find("memory_limit"), std::string::npos);
      EXPECT_TRUE(row[t.column("step_ms_median")].empty());
      EXPECT_TRUE(row[t.column("peak_bytes")].empty());
      EXPECT_FALSE(row[t.column("predicted_ms")].empty());  // analysed, not run
    } else {
      EXPECT_EQ(status, "ok") << row[t.column("reason")];
    }
  }
  // The batch-8 cells need more than 4 MiB (their activations alone are larger).
  EXPECT_GE(oom, 3);
}

TEST(TrainStepSweep, KilledRunResumesWithEveryCellExactlyOnce) {
  auto dir = scratch_dir("train_step_resume");
  write_file(dir / "sweep.yaml", kTinyTrainStep);
  auto csv = dir / "out.csv";
  auto first = run_sweep(dir / "sweep.yaml", csv, "LRA_SWEEP_STOP_AFTER=2");
  ASSERT_EQ(first.status, 0) << first.output;
  ASSERT_EQ(core::read_csv(csv.string()).rows.size(), 2u);
  // A writer killed mid-row leaves a partial line: the resumed run cuts it off.
  {
    std::ofstream out(csv, std::ios::app);
    out << "listops,linear,2,128,3.5";
  }
  auto second = run_sweep(dir / "sweep.yaml", csv);
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_NE(second.output.find("2 cells were already"), std::string::npos) << second.output;
  core::CsvTable t = core::read_csv(csv.string());
  ASSERT_EQ(t.rows.size(), 6u);
  std::multiset<std::string> cells;
  for (const auto& row : t.rows) cells.insert(cell_of(t, row));
  EXPECT_EQ(std::set<std::string>(cells.begin(), cells.end()), expected_cells());
  EXPECT_EQ(cells.size(), expected_cells().size());
  // Nothing left to do the third time.
  auto third = run_sweep(dir / "sweep.yaml", csv);
  ASSERT_EQ(third.status, 0) << third.output;
  EXPECT_NE(third.output.find("0 new rows"), std::string::npos) << third.output;
  EXPECT_EQ(core::read_csv(csv.string()).rows.size(), 6u);
}

TEST(TrainStepSweep, BadConfigsAreRejectedWithKeyAndFile) {
  auto dir = scratch_dir("train_step_bad");
  const std::string head = "kind: train_step\n";
  const std::string tasks = "tasks: [{task: listops, batch: 2, seq_len: 64}]\n";
  const std::string attentions = "attentions: {linear: {type: linear}}\n";
  struct Case {
    std::string yaml, expect;
  };
  std::vector<Case> cases{
      {head + tasks + attentions + "warmups: 2\n", "warmups"},
      {head + tasks + attentions + "reps: 0\n", "reps"},
      {head + tasks + attentions + "memory_limit: 3 parsecs\n", "memory_limit"},
      {head + tasks + attentions + "ceilings: h200\n", "ceilings"},
      {head + tasks + attentions + "ceilings: {gemm_flops_per_s: 1e12}\n", "copy_bytes_per_s"},
      {head + tasks + attentions + "ceilings: {gemm_flops: 1e12, copy_bytes_per_s: 1e9}\n",
       "ceilings.gemm_flops"},
      {head + tasks + attentions + "model: {dims: 32}\n", "model.dims"},
      {head + tasks + attentions + "matmul_precision: tf16\n", "matmul_precision"},
      {head + tasks + attentions + "matmul_precision: []\n", "matmul_precision"},
      // TF32 exists for CUDA products only.
      {head + tasks + attentions + "matmul_precision: [fp32, tf32]\n",
       "matmul_precision: tf32 applies to device cuda only"},
      {head + tasks + attentions + "model: {layers: many}\n", "model.layers"},
      {head + "tasks: [{task: listops, batch: 2, seqlen: 64}]\n" + attentions, "tasks[0].seqlen"},
      {head + "tasks: [{task: listopz, batch: 2, seq_len: 64}]\n" + attentions, "listopz"},
      {head + "tasks: [{task: listops, batch: 0, seq_len: 64}]\n" + attentions, "tasks[0].batch"},
      {head + "tasks: [{task: listops, seq_len: 64}]\n" + attentions, "batch"},
      {head + tasks + "attentions: {nys: {type: nystrom, landmark: 4}}\n", "landmark"},
      {head + tasks + "attentions: {nys: nystrom}\n", "attentions.nys"},
      {head + tasks + "attentions: {x: {type: no_such_backend}}\n", "no_such_backend"},
      {head + tasks, "no attentions"},
      {head + attentions, "no tasks"},
      {"kind: train_steps\n" + tasks + attentions, "kind"},
      // The attention grid's keys are not train_step keys, and the other way round.
      {head + tasks + attentions + "passes: [fwd]\n", "passes"},
      {"backends: [{type: softmax}]\n" + tasks, "tasks"},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    std::string name = "bad";
    name += std::to_string(i);
    auto path = dir / (name + ".yaml");
    write_file(path, cases[i].yaml);
    auto csv = dir / (name + ".csv");
    auto r = run_sweep(path, csv);
    EXPECT_NE(r.status, 0) << cases[i].yaml;
    EXPECT_NE(r.output.find(cases[i].expect), std::string::npos)
        << "expected '" << cases[i].expect << "' in: " << r.output;
    EXPECT_NE(r.output.find(path.string()), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(csv)) << "no CSV for a rejected config: " << cases[i].yaml;
  }
}

TEST(TrainStepSweep, ShippedCpuConfigRuns) {
  // The config parses, every cell resolves, and the run stops before its first cell.
  auto config = source_dir() / "configs" / "sweeps" / "train_step_cpu.yaml";
  auto dir = scratch_dir("train_step_shipped_cpu");
  auto csv = dir / "out.csv";
  auto r = run_sweep(config, csv, "LRA_SWEEP_STOP_AFTER=0");
  ASSERT_EQ(r.status, 0) << r.output;
  core::CsvTable t = core::read_csv(csv.string());
  EXPECT_EQ(t.rows.size(), 0u);
  EXPECT_EQ(t.columns.front(), "task");
}

TEST(TrainStepSweep, AttentionKindIsTheDefaultAndCanBeNamed) {
  auto dir = scratch_dir("sweep_kind_attention");
  write_file(dir / "sweep.yaml", R"(kind: attention
batch: [1]
heads: [1]
head_dim: [4]
seq_len: [8]
backends: [{type: linear}]
warmup: 0
min_reps: 1
min_seconds: 0
)");
  auto csv = dir / "out.csv";
  auto r = run_sweep(dir / "sweep.yaml", csv);
  ASSERT_EQ(r.status, 0) << r.output;
  core::CsvTable t = core::read_csv(csv.string());
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_EQ(t.rows[0][t.column("backend")], "linear");
  EXPECT_EQ(t.rows[0][t.column("pass")], "fwd");
}

}  // namespace
}  // namespace lra::test
