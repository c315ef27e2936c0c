// The training loop: AdamW + OneCycle schedule, evaluation every eval_every steps,
// best-validation checkpoint kept and evaluated on test at the end, resumable
// bit-for-bit from last.ckpt.
#include "model/train.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/allocator.h"
#include "core/csv.h"
#include "core/cuda_runtime_info.h"
#include "core/ops.h"
#include "core/ops_train.h"
#include "core/parallel.h"
#include "core/precision.h"
#include "core/version.h"
#include "model/checkpoint.h"
#include "model/optim.h"
#include "model/trainer.h"

namespace lra::model {
namespace fs = std::filesystem;

EvalResult evaluate(Classifier& model, const tasks::Dataset& data, int64_t batch,
                    int64_t max_batches, int64_t max_len) {
  EvalResult r;
  RunState state;  // training = false: no dropout
  double loss_sum = 0;
  int64_t correct = 0, done = 0;
  core::DType dtype = model.config().dtype;
  for (int64_t start = 0; start < data.size(); start += batch) {
    if (max_batches > 0 && done >= max_batches) break;
    std::vector<int64_t> idx;
    for (int64_t i = start; i < std::min(start + batch, data.size()); ++i) idx.push_back(i);
    tasks::Batch b = tasks::make_batch(data, idx, max_len, false, dtype);
    Tensor logits = model.forward(b.ids, b.mask, b.ids2, b.mask2, b.batch, b.seq, state);
    auto ce = core::cross_entropy(logits, b.labels);
    loss_sum += ce.loss * static_cast<double>(b.batch);
    correct += ce.correct;
    r.examples += b.batch;
    r.tokens += b.batch * b.seq * (data.pairs() ? 2 : 1);
    ++done;
  }
  LRA_CHECK(r.examples > 0, "evaluate: split of task {} is empty", data.task());
  r.loss = loss_sum / static_cast<double>(r.examples);
  r.accuracy = static_cast<double>(correct) / static_cast<double>(r.examples);
  return r;
}

StepResult train_step(Classifier& model, AdamW& optimizer, const tasks::Batch& b,
                      const RunState& state, double lr, const std::string& context) {
  StepResult r;
  optimizer.zero_grad();
  Tensor logits = model.forward(b.ids, b.mask, b.ids2, b.mask2, b.batch, b.seq, state);
  if (model.config().device == core::Device::cpu) {
    auto ce = core::cross_entropy(logits, b.labels);
    LRA_CHECK(std::isfinite(ce.loss), "{}: training loss is {} at step {}", context, ce.loss,
              state.step);
    model.backward(core::cross_entropy_backward(ce.probs, b.labels));
    r.loss = ce.loss;
    r.correct = ce.correct;
  } else {
    auto ce = core::cross_entropy_stats(logits, b.labels);
    model.backward(core::cross_entropy_backward(ce.probs, b.labels));
    r.device_stats = ce.stats;
  }
  optimizer.update(lr, state.step);
  return r;
}

namespace {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  return fmt::format("{:.9g}", v);
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<int>(c));
      continue;
    }
    out += c;
  }
  return out + "\"";
}

void write_text_atomic(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    LRA_CHECK(out.good(), "cannot write {}", tmp);
    out << text;
    out.flush();
    LRA_CHECK(out.good(), "write to {} failed", tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  LRA_CHECK(!ec, "cannot rename {} to {}: {}", tmp, path, ec.message());
}

struct Interval {  // training statistics since the last evaluation (checkpointed)
  double loss_sum = 0;
  int64_t correct = 0, examples = 0;
};

}  // namespace

TrainSummary train_on(const Settings& s, const Splits& splits, const std::string& out_dir,
                      bool resume) {
  LRA_CHECK(splits.train && splits.val, "train: train and val splits are required");
  LRA_CHECK(!s.train.test || splits.test, "train: train.test is true but no test split was given");
  const tasks::Dataset& train_data = *splits.train;
  LRA_CHECK(train_data.size() >= s.train.batch,
            "{}: the train split has {} examples, fewer than train.batch = {}", s.context,
            train_data.size(), s.train.batch);
  if (s.train.threads > 0) core::set_num_threads(static_cast<int>(s.train.threads));
  const core::Device device = core::parse_device(s.train.device);
  if (device == core::Device::cuda) {
    std::string why = core::cuda_unavailable_reason();
    LRA_CHECK(why.empty(), "{}: train.device is cuda, but this lra cannot use a GPU: {}",
              s.context, why);
  }
  core::keep_freed_host_memory();
  const core::ScopedMatmulPrecision precision(s.train.matmul_precision == "tf32"
                                                  ? core::MatmulPrecision::tf32
                                                  : core::MatmulPrecision::fp32);

  ClassifierConfig cc =
      classifier_config(s, train_data.vocab_size(), train_data.num_classes(), train_data.pairs());
  Classifier model(cc);
  AdamWConfig ac;
  ac.beta1 = s.train.beta1;
  ac.beta2 = s.train.beta2;
  ac.eps = s.train.eps;
  ac.weight_decay = s.train.weight_decay;
  ac.clip_norm = s.train.clip_norm;
  AdamW optimizer(model.parameters(), ac);
  Schedule schedule{s.train.lr, s.train.warmup, s.train.steps};
  const uint64_t data_seed = derived_seed(s.train.data_seed, s.train.seed, 0x64617461ull);
  const uint64_t dropout_seed = derived_seed(s.train.dropout_seed, s.train.seed, 0x64726f70ull);
  const uint64_t hash = config_hash(s);

  std::vector<NamedTensor> tensors;
  {
    const auto& params = model.parameters();
    for (std::size_t i = 0; i < params.size(); ++i) {
      tensors.push_back({"param/" + params[i]->name, params[i]->value});
      tensors.push_back({"adam_m/" + params[i]->name, optimizer.first_moments()[i]});
      tensors.push_back({"adam_v/" + params[i]->name, optimizer.second_moments()[i]});
    }
  }

  fs::create_directories(out_dir);
  const std::string last_path = out_dir + "/last.ckpt", best_path = out_dir + "/best.ckpt";
  const std::string metrics_path = out_dir + "/metrics.csv";
  TrainState st;
  Interval interval;
  if (resume) {
    LRA_CHECK(fs::exists(last_path), "--resume {}: no last.ckpt there", out_dir);
    st = load_checkpoint(last_path, hash, tensors);
    interval.loss_sum = st.interval_loss_sum;
    interval.correct = st.interval_correct;
    interval.examples = st.interval_examples;
  } else {
    LRA_CHECK(!fs::exists(last_path) && !fs::exists(metrics_path),
              "{} already holds a run (last.ckpt / metrics.csv); use --resume {} or another --out",
              out_dir, out_dir);
  }
  {
    YAML::Emitter e;
    e << settings_to_yaml(s);
    write_text_atomic(out_dir + "/config.yaml", std::string(e.c_str()) + "\n");
  }
  core::CsvWriter metrics(
      metrics_path, {"step", "split", "loss", "accuracy", "lr", "tokens_per_s", "peak_bytes"});
  auto& alloc = core::allocator_for(device);  // peak bytes of the device that trains
  alloc.reset_peak();

  const int64_t stop = s.train.stop_at > 0 ? s.train.stop_at : s.train.steps;
  const int64_t tokens_per_step = s.train.batch * s.task.max_len * (train_data.pairs() ? 2 : 1);
  const bool tty = ::isatty(2) != 0;
  using clock = std::chrono::steady_clock;
  const auto t_start = clock::now();
  const double wall_before = st.wall_seconds;
  double interval_seconds = 0;
  int64_t interval_tokens = 0;
  int64_t steps_this_run = 0, tokens_this_run = 0;
  double train_seconds = 0;  // time in training steps only (evaluation excluded)
  std::vector<int64_t> order = tasks::epoch_order(train_data.size(), data_seed, st.epoch);
  double last_lr = learning_rate(schedule, std::max<int64_t>(st.step, 1));

  auto elapsed = [&] { return std::chrono::duration<double>(clock::now() - t_start).count(); };
  // On a device the step's loss and hits stay there (summed into device_stats) and come
  // back at log / evaluation steps only: no host sync inside a training step.
  Tensor device_stats;
  int64_t stats_from = st.step + 1;
  auto flush_stats = [&] {
    if (!device_stats.defined()) return;
    std::vector<double> v = device_stats.to_vector();
    device_stats = Tensor();
    LRA_CHECK(std::isfinite(v[0]), "{}: training loss is {} in steps {}..{}", s.context, v[0],
              stats_from, st.step);
    interval.loss_sum += v[0];
    interval.correct += static_cast<int64_t>(v[1]);
    stats_from = st.step + 1;
  };
  auto save = [&](const std::string& path) {
    flush_stats();
    st.wall_seconds = wall_before + elapsed();
    st.interval_loss_sum = interval.loss_sum;
    st.interval_correct = interval.correct;
    st.interval_examples = interval.examples;
    save_checkpoint(path, hash, st, tensors);
  };

  while (st.step < stop) {
    // Next batch of the seeded epoch order (the remainder of an epoch is dropped).
    if (st.position + s.train.batch > train_data.size()) {
      ++st.epoch;
      st.position = 0;
      order = tasks::epoch_order(train_data.size(), data_seed, st.epoch);
    }
    std::vector<int64_t> idx(order.begin() + st.position,
                             order.begin() + st.position + s.train.batch);
    st.position += s.train.batch;
    tasks::Batch b = tasks::make_batch(train_data, idx, s.task.max_len, false, cc.dtype);

    const int64_t step = st.step + 1;
    const auto step_start = clock::now();
    last_lr = learning_rate(schedule, step);
    StepResult r = train_step(model, optimizer, b, RunState{true, dropout_seed, step}, last_lr,
                              s.context);
    if (device == core::Device::cpu) {
      interval.loss_sum += r.loss * static_cast<double>(b.batch);
      interval.correct += r.correct;
    } else if (device_stats.defined()) {
      core::add_into(device_stats, r.device_stats);
    } else {
      device_stats = r.device_stats;
    }
    st.step = step;
    const bool log_now = step % s.train.log_every == 0 || step == stop;
    const bool eval_now = step % s.train.eval_every == 0 || step == s.train.steps;
    if (device != core::Device::cpu && (log_now || eval_now)) {
      // The step's device work ends inside the timed region; the norm and loss are checked.
      optimizer.last_grad_norm();
      flush_stats();
    }
    const double step_seconds = std::chrono::duration<double>(clock::now() - step_start).count();
    train_seconds += step_seconds;
    interval_seconds += step_seconds;
    interval.examples += b.batch;
    interval_tokens += tokens_per_step;
    tokens_this_run += tokens_per_step;
    ++steps_this_run;

    if (log_now) {
      double t = elapsed();
      double rate = static_cast<double>(tokens_this_run) / std::max(train_seconds, 1e-9);
      double eta = t / static_cast<double>(steps_this_run) * static_cast<double>(stop - step);
      std::fprintf(stderr, "%sstep %lld/%lld  loss %.4f  acc %.3f  lr %.3g  %.0f tok/s  ETA %s%s",
                   tty ? "\r" : "", static_cast<long long>(step),
                   static_cast<long long>(s.train.steps),
                   interval.loss_sum / static_cast<double>(std::max<int64_t>(interval.examples, 1)),
                   static_cast<double>(interval.correct) /
                       static_cast<double>(std::max<int64_t>(interval.examples, 1)),
                   last_lr, rate, format_duration(eta).c_str(), tty ? "   " : "\n");
    }

    if (eval_now) {
      double rate = static_cast<double>(interval_tokens) / std::max(interval_seconds, 1e-9);
      std::string peak = std::to_string(alloc.peak_bytes());
      metrics.write_row(
          {std::to_string(step), "train",
           core::csv_number(interval.loss_sum / static_cast<double>(interval.examples)),
           core::csv_number(static_cast<double>(interval.correct) /
                            static_cast<double>(interval.examples)),
           core::csv_number(last_lr), core::csv_number(rate), peak});
      interval = Interval{};
      EvalResult v =
          evaluate(model, *splits.val, s.train.eval_batch, s.train.eval_batches, s.task.max_len);
      metrics.write_row({std::to_string(step), "val", core::csv_number(v.loss),
                         core::csv_number(v.accuracy), core::csv_number(last_lr), "", peak});
      if (tty) std::fprintf(stderr, "\n");
      std::fprintf(stderr, "eval step %lld: val loss %.4f  acc %.4f%s\n",
                   static_cast<long long>(step), v.loss, v.accuracy,
                   v.accuracy > st.best_val_accuracy ? "  (best)" : "");
      if (v.accuracy > st.best_val_accuracy) {
        st.best_val_accuracy = v.accuracy;
        st.best_step = step;
        save(best_path);
      }
      save(last_path);
      interval_seconds = 0;
      interval_tokens = 0;
    }
  }
  if (tty) std::fprintf(stderr, "\n");
  if (steps_this_run > 0 && st.step % s.train.eval_every != 0 && st.step != s.train.steps)
    save(last_path);

  TrainSummary summary;
  summary.out_dir = out_dir;
  summary.steps = st.step;
  summary.best_step = st.best_step;
  summary.best_val_accuracy = st.best_val_accuracy;
  summary.test_accuracy = std::numeric_limits<double>::quiet_NaN();
  summary.wall_seconds = wall_before + elapsed();
  // Training throughput: tokens (padding included) per second of training steps.
  summary.tokens_per_second = static_cast<double>(tokens_this_run) / std::max(train_seconds, 1e-9);
  summary.peak_bytes = alloc.peak_bytes();
  const bool finished = st.step >= s.train.steps;
  double test_loss = std::numeric_limits<double>::quiet_NaN();
  if (finished && s.train.test) {
    // The best validation checkpoint, not the last one, is evaluated on test.
    LRA_CHECK(fs::exists(best_path), "{}: no best.ckpt to evaluate", out_dir);
    load_checkpoint(best_path, hash, tensors);
    EvalResult t = evaluate(model, *splits.test, s.train.eval_batch, 0, s.task.max_len);
    summary.test_accuracy = t.accuracy;
    test_loss = t.loss;
    metrics.write_row({std::to_string(st.best_step), "test", core::csv_number(t.loss),
                       core::csv_number(t.accuracy), "", "", std::to_string(alloc.peak_bytes())});
    std::fprintf(stderr, "test (best val checkpoint, step %lld): acc %.4f\n",
                 static_cast<long long>(st.best_step), t.accuracy);
  }
  std::string json = "{\n";
  auto field = [&](const std::string& k, const std::string& v, bool last = false) {
    json += "  " + json_string(k) + ": " + v + (last ? "\n" : ",\n");
  };
  field("task", json_string(s.task.name));
  field("attention", json_string(s.attention["type"].as<std::string>()));
  field("attention_params", json_string(attention::spec_params(s.attention)));
  field("best_val_accuracy", json_number(summary.best_val_accuracy));
  field("best_step", std::to_string(summary.best_step));
  field("test_accuracy", json_number(summary.test_accuracy));
  field("test_loss", json_number(test_loss));
  field("steps", std::to_string(summary.steps));
  field("total_steps", std::to_string(s.train.steps));
  field("finished", finished ? "true" : "false");
  field("wall_seconds", json_number(summary.wall_seconds));
  field("tokens_per_second", json_number(summary.tokens_per_second));
  field("peak_bytes", std::to_string(summary.peak_bytes));
  field("parameters", std::to_string([&] {
          int64_t n = 0;
          for (auto* p : model.parameters()) n += p->value.numel();
          return n;
        }()));
  field("device", json_string(s.train.device));
  field("dtype", json_string(s.train.dtype));
  field("matmul_precision", json_string(s.train.matmul_precision));
  field("threads", std::to_string(core::num_threads()));
  field("seed", std::to_string(s.train.seed));
  field("commit", json_string(core::git_commit()), true);
  json += "}\n";
  write_text_atomic(out_dir + "/summary.json", json);
  return summary;
}

TrainSummary train(const YAML::Node& config, const std::string& out_dir, bool resume) {
  Settings s = parse_settings(config, "config");
  std::error_code ec;
  LRA_CHECK(fs::is_directory(s.task.data_dir, ec),
            "task.data_dir '{}' does not exist (create it with `lra data generate {} --out {}` "
            "where a generator exists, or download the LRA release)",
            s.task.data_dir, s.task.name, s.task.data_dir);
  // Every split is loaded (and its keys validated) before any training starts.
  auto train_data = tasks::load_dataset(s.task.section, tasks::Split::train, "task");
  auto val_data = tasks::load_dataset(s.task.section, tasks::Split::val, "task");
  std::unique_ptr<tasks::Dataset> test_data;
  if (s.train.test) test_data = tasks::load_dataset(s.task.section, tasks::Split::test, "task");
  return train_on(s, Splits{train_data.get(), val_data.get(), test_data.get()}, out_dir, resume);
}

}  // namespace lra::model
