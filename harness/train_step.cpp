#include "harness/train_step.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <new>

#include "attention/attention.h"
#include "core/allocator.h"
#include "core/csv.h"
#include "core/cuda_runtime_info.h"
#include "core/device_timer.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "core/version.h"
#include "harness/sweep.h"
#include "model/classifier.h"
#include "model/config.h"
#include "model/optim.h"
#include "model/step_count.h"
#include "model/trainer.h"
#include "tasks/dataset.h"

namespace lra::harness {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string yaml_text(const YAML::Node& node) {
  if (node.IsScalar()) return node.Scalar();
  YAML::Emitter e;
  e << YAML::Flow << node;
  return e.c_str();
}

Ceilings parse_ceilings(const YAML::Node& node, const std::string& context) {
  Ceilings c;
  if (node.IsScalar()) {
    c.name = node.Scalar();
    if (c.name == "h100_fp32") {
      c.gemm_flops_per_s = kH100Fp32GemmFlopsPerS;
      c.copy_bytes_per_s = kH100CopyBytesPerS;
    } else if (c.name == "h100_tf32") {
      c.gemm_flops_per_s = kH100Tf32GemmFlopsPerS;
      c.copy_bytes_per_s = kH100CopyBytesPerS;
    } else {
      LRA_CHECK(c.name == "none",
                "{}: ceilings: unknown preset '{}' (h100_fp32, h100_tf32, none, or "
                "{{gemm_flops_per_s: F, copy_bytes_per_s: W}})",
                context, c.name);
    }
    return c;
  }
  LRA_CHECK(node.IsMap(),
            "{}: ceilings must be h100_fp32, h100_tf32, none or {{gemm_flops_per_s: F, "
            "copy_bytes_per_s: W}}",
            context);
  c.name = "custom";
  for (const auto& entry : node) {
    std::string key = entry.first.as<std::string>();
    double v = config_scalar<double>(entry.second, "ceilings." + key, context, "a number");
    LRA_CHECK(v > 0 && std::isfinite(v), "{}: ceilings.{} must be positive, got {}", context, key,
              entry.second.Scalar());
    if (key == "gemm_flops_per_s") {
      c.gemm_flops_per_s = v;
    } else if (key == "copy_bytes_per_s") {
      c.copy_bytes_per_s = v;
    } else {
      fail("{}: unknown key ceilings.{} (known: gemm_flops_per_s, copy_bytes_per_s)", context, key);
    }
  }
  LRA_CHECK(c.defined(), "{}: ceilings needs both gemm_flops_per_s and copy_bytes_per_s", context);
  return c;
}

TrainStepTask parse_task(const YAML::Node& item, std::size_t index, const std::string& context) {
  const std::string where = fmt::format("tasks[{}]", index);
  LRA_CHECK(item.IsMap(),
            "{}: {} must be a mapping like {{task: listops, batch: 32, seq_len: 2048}}", context,
            where);
  TrainStepTask t;
  bool have_vocab = false, have_classes = false;
  auto positive = [&](const YAML::Node& v, const std::string& key) {
    auto n = config_scalar<int64_t>(v, where + "." + key, context, "a positive integer");
    LRA_CHECK(n > 0, "{}: {}.{} must be a positive integer, got {}", context, where, key, n);
    return n;
  };
  for (const auto& entry : item) {
    std::string key = entry.first.as<std::string>();
    const YAML::Node& v = entry.second;
    if (key == "task") {
      t.task = config_scalar<std::string>(v, where + ".task", context, "a task name");
    } else if (key == "label") {
      t.label = config_scalar<std::string>(v, where + ".label", context, "a string");
    } else if (key == "batch") {
      t.batch = positive(v, key);
    } else if (key == "seq_len") {
      t.seq_len = positive(v, key);
    } else if (key == "vocab") {
      t.vocab = positive(v, key);
      have_vocab = true;
    } else if (key == "num_classes") {
      t.num_classes = positive(v, key);
      have_classes = true;
    } else {
      fail("{}: unknown key {}.{} (known: task, label, batch, seq_len, vocab, num_classes)",
           context, where, key);
    }
  }
  LRA_CHECK(!t.task.empty(), "{}: {}.task is required", context, where);
  LRA_CHECK(t.batch > 0 && t.seq_len > 0, "{}: {} needs batch and seq_len", context, where);
  const tasks::TaskInfo* info = nullptr;
  try {
    info = &tasks::task_info(t.task);
  } catch (const Error& e) {
    fail("{}: {}.task: {}", context, where, e.what());
  }
  if (!have_vocab) t.vocab = info->vocab_size;
  if (!have_classes) t.num_classes = info->num_classes;
  LRA_CHECK(t.vocab >= 2, "{}: {}.vocab must be >= 2 (id 0 is padding)", context, where);
  LRA_CHECK(t.num_classes >= 2, "{}: {}.num_classes must be >= 2", context, where);
  t.pairs = info->pairs;
  if (t.label.empty()) t.label = t.task;
  return t;
}

// One (task, attention) cell: the training config `lra train` would resolve for it.
struct Cell {
  const TrainStepTask* task = nullptr;
  const TrainStepAttention* attention = nullptr;
  core::MatmulPrecision precision = core::MatmulPrecision::fp32;
  Ceilings ceilings;
  model::Settings settings;
  model::ClassifierConfig classifier;
  std::string backend, params, model_text;
};

Cell make_cell(const TrainStepConfig& c, const TrainStepTask& t, const TrainStepAttention& a,
               core::MatmulPrecision precision) {
  YAML::Node root;
  root["task"]["name"] = t.task;
  root["task"]["max_len"] = t.seq_len;
  root["model"] = c.model ? YAML::Clone(c.model) : YAML::Node(YAML::NodeType::Map);
  root["attention"] = YAML::Clone(a.spec);
  root["train"]["batch"] = t.batch;
  root["train"]["dtype"] = std::string(core::dtype_name(c.dtype));
  root["train"]["device"] = std::string(core::device_name(c.device));
  root["train"]["seed"] = static_cast<int64_t>(c.seed & 0x7fffffffffffffffull);
  Cell cell;
  cell.task = &t;
  cell.attention = &a;
  cell.precision = precision;
  cell.ceilings = ceilings_for(c, precision);
  try {
    cell.settings = model::parse_settings(root, c.context);
  } catch (const Error& e) {
    fail("{} (cell: task {}, attention {})", e.what(), t.label, a.label);
  }
  cell.classifier = model::classifier_config(cell.settings, t.vocab, t.num_classes, t.pairs);
  cell.backend = a.spec["type"].as<std::string>();
  cell.params = attention::spec_params(a.spec);
  const model::ModelSettings& m = cell.settings.model;
  cell.model_text = fmt::format(
      "dim={};hidden={};heads={};head_dim={};layers={};head_hidden={};dropout={};"
      "attention_dropout={};pooling={};positions={}",
      m.dim, m.hidden, m.heads, m.head_dim, m.layers, m.head_hidden, m.dropout, m.attention_dropout,
      m.pooling, m.positions);
  return cell;
}

// Tasks outer, then attentions (the order of the anchor file), precisions inner.
std::vector<Cell> expand_cells(const TrainStepConfig& c) {
  std::vector<Cell> cells;
  for (const auto& t : c.tasks)
    for (const auto& a : c.attentions)
      for (auto p : c.matmul_precisions) cells.push_back(make_cell(c, t, a, p));
  return cells;
}

std::string cell_key(const Cell& cell, const TrainStepConfig& c) {
  return fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}", cell.task->label, cell.attention->label,
                     cell.backend, cell.params, cell.model_text, cell.task->vocab,
                     cell.task->num_classes, core::device_name(c.device), core::dtype_name(c.dtype),
                     core::matmul_precision_name(cell.precision), cell.task->batch,
                     cell.task->seq_len);
}

// The processor or GPU the cell runs on, for the row's provenance.
std::string device_model(core::Device device) {
  if (device == core::Device::cuda) {
    auto gpus = core::cuda_device_descriptions();
    return gpus.empty() ? std::string() : gpus.front();
  }
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    auto colon = line.find(':');
    if (colon == std::string::npos) break;
    std::string v = line.substr(colon + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    return v;
  }
  return "";
}

void require_device(const TrainStepConfig& c) {
  if (c.device != core::Device::cuda) return;
  LRA_CHECK(core::cuda_device_count() > 0, "{}: device cuda: {}", c.context,
            core::cuda_unavailable_reason());
}

struct CellResult {
  std::string status = "ok", reason;
  bool counted = false;
  model::StepCount count;
  double predicted_ms = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> times_ms;
  double median = 0, p10 = 0, p90 = 0, tokens_per_s = 0, peak_bytes = 0, loss = 0;
};

int64_t tokens_per_step(const TrainStepTask& t) { return t.batch * t.seq_len * (t.pairs ? 2 : 1); }

// The analytic count and prediction of a cell; `oom` when its estimated peak exceeds
// memory_limit.
CellResult analyse_cell(const Cell& cell, const TrainStepConfig& c) {
  CellResult r;
  r.count = model::training_step_count(cell.classifier, cell.task->batch, cell.task->seq_len);
  r.counted = true;
  const Ceilings& ceil = cell.ceilings;
  if (ceil.defined())
    r.predicted_ms = 1e3 * r.count.roofline_seconds(ceil.gemm_flops_per_s, ceil.copy_bytes_per_s);
  if (c.memory_limit > 0 && r.count.memory_bytes > c.memory_limit) {
    r.status = "oom";
    r.reason = fmt::format("estimated peak {} > memory_limit {}",
                           format_bytes(r.count.memory_bytes), format_bytes(c.memory_limit));
  }
  return r;
}

// A batch of random tokens in [1, vocab) with an all-ones mask and random labels.
tasks::Batch random_batch(const TrainStepTask& t, core::Rng& rng, core::DType dtype) {
  tasks::Batch b;
  b.batch = t.batch;
  b.seq = t.seq_len;
  auto ids = [&] {
    core::Tensor u = core::Tensor::empty(core::Shape{t.batch * t.seq_len}, core::DType::f64);
    rng.uniform(u, 1.0, static_cast<double>(t.vocab));
    std::vector<int32_t> out;
    out.reserve(static_cast<std::size_t>(u.numel()));
    for (double v : u.to_vector())
      out.push_back(std::min(static_cast<int32_t>(v), static_cast<int32_t>(t.vocab - 1)));
    return out;
  };
  b.ids = ids();
  b.mask = core::Tensor::full(core::Shape{t.batch, t.seq_len}, 1.0, dtype);
  if (t.pairs) {
    b.ids2 = ids();
    b.mask2 = core::Tensor::full(core::Shape{t.batch, t.seq_len}, 1.0, dtype);
  }
  for (int64_t i = 0; i < t.batch; ++i)
    b.labels.push_back(static_cast<int32_t>(
        std::min<double>(rng.uniform_scalar() * static_cast<double>(t.num_classes),
                         static_cast<double>(t.num_classes - 1))));
  return b;
}

CellResult measure_cell(const Cell& cell, const TrainStepConfig& c) {
  CellResult r = analyse_cell(cell, c);
  if (r.status != "ok") return r;
  const TrainStepTask& t = *cell.task;
  const model::Settings& s = cell.settings;
  core::Allocator& alloc = core::allocator_for(c.device);
  core::device_synchronize(c.device);
  // The whole cell's maximum (parameters, optimizer state, activations), as the anchor's
  // max_memory_allocated over the process.
  alloc.reset_peak();
  {
    model::Classifier net(cell.classifier);
    model::AdamWConfig ac;
    ac.beta1 = s.train.beta1;
    ac.beta2 = s.train.beta2;
    ac.eps = s.train.eps;
    ac.weight_decay = s.train.weight_decay;
    ac.clip_norm = s.train.clip_norm;
    model::AdamW optimizer(net.parameters(), ac);
    // The dropout seed `lra train` derives from train.seed.
    const uint64_t dropout_seed =
        model::derived_seed(s.train.dropout_seed, s.train.seed, 0x64726f70ull);
    core::Rng rng(core::mix64(c.seed ^ 0x746f6b656e73ull));
    core::DeviceTimer timer(c.device);
    model::StepResult last;
    for (int i = 0; i < c.warmup + c.reps; ++i) {
      tasks::Batch b = random_batch(t, rng, cell.classifier.dtype);  // not timed
      const model::RunState state{true, dropout_seed, i + 1};
      timer.start();
      last = model::train_step(net, optimizer, b, state, s.train.lr, c.context);
      const double ms = timer.stop_ms();
      if (i >= c.warmup) r.times_ms.push_back(ms);
    }
    // Outside the timed steps: the last step's loss and gradient norm must be finite.
    r.loss = c.device == core::Device::cpu
                 ? last.loss
                 : last.device_stats.to_vector()[0] / static_cast<double>(t.batch);
    LRA_CHECK(std::isfinite(r.loss), "{}: training loss is {} (task {}, attention {})", c.context,
              r.loss, t.label, cell.attention->label);
    optimizer.last_grad_norm();
  }
  core::device_synchronize(c.device);
  r.peak_bytes = static_cast<double>(alloc.peak_bytes());
  r.median = quantile(r.times_ms, 0.5);
  r.p10 = quantile(r.times_ms, 0.1);
  r.p90 = quantile(r.times_ms, 0.9);
  r.tokens_per_s = static_cast<double>(tokens_per_step(t)) / (r.median * 1e-3);
  return r;
}

std::map<std::string, std::string> row_of(const Cell& cell, const CellResult& r,
                                          const TrainStepConfig& c, const std::string& gpu) {
  const bool timed = r.status == "ok";
  auto num = [](bool have, double v) { return have ? core::csv_number(v) : std::string(); };
  return {{"task", cell.task->label},
          {"attention", cell.attention->label},
          {"batch", std::to_string(cell.task->batch)},
          {"seq_len", std::to_string(cell.task->seq_len)},
          {"step_ms_median", num(timed, r.median)},
          {"step_ms_p10", num(timed, r.p10)},
          {"step_ms_p90", num(timed, r.p90)},
          {"tokens_per_s", num(timed, r.tokens_per_s)},
          {"peak_bytes", num(timed, r.peak_bytes)},
          {"predicted_ms", num(r.counted && !std::isnan(r.predicted_ms), r.predicted_ms)},
          {"flops", num(r.counted, r.count.flops())},
          {"traffic_bytes", num(r.counted, r.count.bytes())},
          {"analytic_bytes", num(r.counted, r.count.memory_bytes)},
          {"parameters", num(r.counted, r.count.parameters)},
          {"loss", num(timed, r.loss)},
          {"backend", cell.backend},
          {"params", cell.params},
          {"model", cell.model_text},
          {"vocab", std::to_string(cell.task->vocab)},
          {"num_classes", std::to_string(cell.task->num_classes)},
          {"device", std::string(core::device_name(c.device))},
          {"device_model", gpu},
          {"dtype", std::string(core::dtype_name(c.dtype))},
          {"matmul_precision", core::matmul_precision_name(cell.precision)},
          {"ceilings", cell.ceilings.name},
          {"gemm_flops_per_s", num(cell.ceilings.defined(), cell.ceilings.gemm_flops_per_s)},
          {"copy_bytes_per_s", num(cell.ceilings.defined(), cell.ceilings.copy_bytes_per_s)},
          {"warmup", std::to_string(c.warmup)},
          {"reps", std::to_string(timed ? static_cast<int>(r.times_ms.size()) : 0)},
          {"status", r.status},
          {"reason", r.reason},
          {"seed", std::to_string(c.seed)},
          {"threads", std::to_string(core::num_threads())},
          {"commit", core::git_commit()}};
}

}  // namespace

TrainStepConfig parse_train_step_config(const YAML::Node& node, const std::string& context) {
  LRA_CHECK(sweep_kind(node, context) == "train_step", "{}: not a kind: train_step sweep", context);
  TrainStepConfig c;
  c.context = context;
  YAML::Node ceilings;
  bool have_ceilings = false;
  for (const auto& entry : node) {
    std::string key = entry.first.as<std::string>();
    const YAML::Node& v = entry.second;
    if (key == "kind") {
      continue;  // checked above
    } else if (key == "device") {
      c.device = core::parse_device(config_scalar<std::string>(v, key, context, "cpu or cuda"));
    } else if (key == "dtype") {
      c.dtype = core::parse_dtype(config_scalar<std::string>(v, key, context, "f32 or f64"));
      LRA_CHECK(c.dtype != core::DType::bf16, "{}: dtype must be f32 or f64 (the model trains in "
                "f32 or f64; bf16 is a storage type of the attention sweeps)", context);
    } else if (key == "matmul_precision") {
      c.matmul_precisions.clear();
      std::vector<YAML::Node> items;
      if (v.IsSequence())
        for (const auto& item : v) items.push_back(item);
      else
        items.push_back(v);
      for (const auto& item : items) {
        auto p = config_scalar<std::string>(item, key, context, "fp32 or tf32 (or a list)");
        LRA_CHECK(p == "fp32" || p == "tf32",
                  "{}: matmul_precision must be fp32 or tf32 (or a list), got '{}'", context, p);
        c.matmul_precisions.push_back(p == "tf32" ? core::MatmulPrecision::tf32
                                                  : core::MatmulPrecision::fp32);
      }
      LRA_CHECK(!c.matmul_precisions.empty(), "{}: matmul_precision is an empty list", context);
    } else if (key == "warmup") {
      c.warmup = config_scalar<int>(v, key, context, "an integer");
      LRA_CHECK(c.warmup >= 0, "{}: warmup must be >= 0", context);
    } else if (key == "reps") {
      c.reps = config_scalar<int>(v, key, context, "an integer");
      LRA_CHECK(c.reps >= 1, "{}: reps must be >= 1", context);
    } else if (key == "memory_limit") {
      c.memory_limit = parse_bytes(v, context + ": memory_limit");
    } else if (key == "seed") {
      c.seed = config_scalar<uint64_t>(v, key, context, "a non-negative integer");
    } else if (key == "ceilings") {
      ceilings = YAML::Clone(v);
      have_ceilings = true;
    } else if (key == "model") {
      LRA_CHECK(v.IsMap(), "{}: model must be a mapping of training-config model keys", context);
      c.model = YAML::Clone(v);
    } else if (key == "tasks") {
      LRA_CHECK(v.IsSequence(), "{}: tasks must be a list of {{task, batch, seq_len}} mappings",
                context);
      for (std::size_t i = 0; i < v.size(); ++i) c.tasks.push_back(parse_task(v[i], i, context));
    } else if (key == "attentions") {
      LRA_CHECK(v.IsMap(),
                "{}: attentions must map labels to attention specs, e.g. "
                "{{nystrom-64: {{type: nystrom, landmarks: 64}}}}",
                context);
      for (const auto& a : v) {
        TrainStepAttention att;
        att.label = a.first.as<std::string>();
        LRA_CHECK(a.second.IsMap() && a.second["type"],
                  "{}: attentions.{} must be an attention spec with a 'type', got '{}'", context,
                  att.label, yaml_text(a.second));
        att.spec = YAML::Clone(a.second);
        c.attentions.push_back(att);
      }
    } else {
      fail(
          "{}: unknown train_step sweep key '{}' (known: kind, device, dtype, "
          "matmul_precision, tasks, attentions, model, warmup, reps, memory_limit, seed, "
          "ceilings)",
          context, key);
    }
  }
  LRA_CHECK(!c.tasks.empty(), "{}: no tasks listed", context);
  LRA_CHECK(!c.attentions.empty(), "{}: no attentions listed", context);
  for (auto p : c.matmul_precisions)
    LRA_CHECK(p == core::MatmulPrecision::fp32 || c.device == core::Device::cuda,
              "{}: matmul_precision: tf32 applies to device cuda only (CPU products are exact)",
              context);
  if (have_ceilings) {
    c.ceilings = parse_ceilings(ceilings, context);
    c.ceilings_given = true;
  }
  // Every cell resolves as a training config (model keys, attention spec at seq_len).
  expand_cells(c);
  return c;
}

Ceilings ceilings_for(const TrainStepConfig& config, core::MatmulPrecision precision) {
  if (config.ceilings_given) return config.ceilings;
  if (config.device == core::Device::cuda)
    return parse_ceilings(
        YAML::Node(precision == core::MatmulPrecision::tf32 ? "h100_tf32" : "h100_fp32"),
        config.context);
  Ceilings none;
  none.name = "none";
  return none;
}

const std::vector<std::string>& train_step_columns() {
  static const std::vector<std::string> columns{"task",
                                                "attention",
                                                "batch",
                                                "seq_len",
                                                "step_ms_median",
                                                "step_ms_p10",
                                                "step_ms_p90",
                                                "tokens_per_s",
                                                "peak_bytes",
                                                "predicted_ms",
                                                "flops",
                                                "traffic_bytes",
                                                "analytic_bytes",
                                                "parameters",
                                                "loss",
                                                "backend",
                                                "params",
                                                "model",
                                                "vocab",
                                                "num_classes",
                                                "device",
                                                "device_model",
                                                "dtype",
                                                "matmul_precision",
                                                "ceilings",
                                                "gemm_flops_per_s",
                                                "copy_bytes_per_s",
                                                "warmup",
                                                "reps",
                                                "status",
                                                "reason",
                                                "seed",
                                                "threads",
                                                "commit"};
  return columns;
}

const std::vector<std::string>& train_step_key_columns() {
  static const std::vector<std::string> columns{
      "task",        "attention", "backend", "params",           "model", "vocab",
      "num_classes", "device",    "dtype",   "matmul_precision", "batch", "seq_len"};
  return columns;
}

int run_train_step_sweep(const TrainStepConfig& config, const std::string& out_csv,
                         int stop_after) {
  require_device(config);          // before any output
  core::keep_freed_host_memory();  // as `lra train`: no page faults on fresh host buffers
  const std::vector<Cell> cells = expand_cells(config);
  core::CsvWriter writer(out_csv, train_step_columns());
  const std::map<std::string, std::string> done = existing_rows(out_csv, train_step_key_columns());
  const std::string gpu = device_model(config.device);
  const core::ScopedMatmulPrecision restore(core::matmul_precision());  // put back at the end

  int errors = 0, written = 0, skipped_existing = 0;
  const auto start = Clock::now();
  const std::size_t total = cells.size();
  for (std::size_t i = 0; i < total; ++i) {
    const Cell& cell = cells[i];
    if (done.count(cell_key(cell, config))) {
      ++skipped_existing;
      continue;
    }
    if (stop_after >= 0 && written >= stop_after) {
      std::fprintf(stderr, "sweep: stopping after %d rows (LRA_SWEEP_STOP_AFTER)\n", written);
      return errors;
    }
    CellResult r;
    try {
      core::set_matmul_precision(cell.precision);
      r = measure_cell(cell, config);
    } catch (const std::bad_alloc&) {
      r = CellResult{};
      r.status = "oom";
      r.reason = "allocation failed (std::bad_alloc)";
    } catch (const Error& e) {
      r = CellResult{};
      r.status = is_device_oom(e) ? "oom" : "error";
      r.reason = e.what();
    }
    if (r.status == "error") ++errors;
    writer.write_row(row_of(cell, r, config, gpu));
    ++written;

    const double elapsed = seconds_since(start);
    const double eta = elapsed / written * static_cast<double>(total - i - 1);
    const std::string what =
        fmt::format("{} {} B={} N={}{}", cell.task->label, cell.attention->label, cell.task->batch,
                    cell.task->seq_len,
                    config.device == core::Device::cuda
                        ? std::string(" ") + core::matmul_precision_name(cell.precision)
                        : std::string());
    if (r.status == "ok") {
      std::string predicted =
          std::isnan(r.predicted_ms) ? std::string("-") : fmt::format("{:.3f} ms", r.predicted_ms);
      std::fprintf(stderr,
                   "[%zu/%zu] %s: %.3f ms/step (p10 %.3f, p90 %.3f, %zu steps), %.0f tok/s, "
                   "peak %s, predicted %s | %.0fs, ETA ~%.0fs\n",
                   i + 1, total, what.c_str(), r.median, r.p10, r.p90, r.times_ms.size(),
                   r.tokens_per_s, format_bytes(r.peak_bytes).c_str(), predicted.c_str(), elapsed,
                   eta);
    } else {
      std::fprintf(stderr, "[%zu/%zu] %s: %s — %s\n", i + 1, total, what.c_str(), r.status.c_str(),
                   r.reason.c_str());
    }
  }
  if (skipped_existing > 0)
    std::fprintf(stderr, "sweep: %d cells were already in %s (resumed)\n", skipped_existing,
                 out_csv.c_str());
  std::fprintf(stderr, "sweep: %d new rows in %s (%.1f s)%s\n", written, out_csv.c_str(),
               seconds_since(start), errors ? fmt::format(", {} errors", errors).c_str() : "");
  return errors;
}

}  // namespace lra::harness
