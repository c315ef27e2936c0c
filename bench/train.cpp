// Training throughput on the CPU at the ListOps settings of the Nyströmformer LRA code
// (2 layers, dim 64, FFN 128, 2 heads x 32, batch 32, N = 2000, dropout 0.1): one
// optimizer step = forward + backward + AdamW update. Reports tokens/s (B * N per step).
// The attention_share counter is the wall time inside the backends' forward and
// backward calls over the step time, measured in the same steps. BM_attention_only times the two
// layers' backend forward + backward alone at the same shape, so attention share = attention_only
// time / train_step time.
#include <benchmark/benchmark.h>

#include <chrono>

#include "attention/attention.h"
#include "core/allocator.h"
#include "core/ops_train.h"
#include "core/rng.h"
#include "model/classifier.h"
#include "model/optim.h"
#include "model/trainer.h"

namespace {

using namespace lra;

constexpr int64_t batch = 32, seq = 2000, vocab = 32, classes = 10, layers = 2;

YAML::Node spec_for(const std::string& name) {
  if (name == "nystrom-64")
    return YAML::Load("{type: nystrom, landmarks: 64, pinv_iters: 6, conv_kernel: 35}");
  return YAML::Load("{type: " + name + "}");
}

std::string backend_type(const std::string& name) {
  return spec_for(name)["type"].as<std::string>();
}

void train_step(benchmark::State& state, const std::string& name) {
  if (!attention::backends().count(backend_type(name))) {
    state.SkipWithError(("backend not registered: " + name).c_str());
    return;
  }
  core::keep_freed_host_memory();
  model::ClassifierConfig c;
  c.vocab = vocab;
  c.num_classes = classes;
  c.max_len = seq;
  c.batch = batch;
  c.attention = spec_for(name);
  model::Classifier net(c);
  model::AdamW opt(net.parameters(), {});
  // A full-length batch of random tokens (ListOps sequences are padded to 2000).
  std::vector<int32_t> ids(static_cast<std::size_t>(batch * seq));
  core::Rng rng(7);
  for (auto& id : ids) id = 1 + static_cast<int32_t>(rng.uniform_scalar() * (vocab - 1));
  core::Tensor mask = core::Tensor::full(core::Shape{batch, seq}, 1.0);
  std::vector<int32_t> labels(batch);
  for (int64_t i = 0; i < batch; ++i)
    labels[static_cast<std::size_t>(i)] = static_cast<int32_t>(i % classes);
  int64_t step = 0;
  auto one_step = [&] {
    ++step;
    model::RunState rs{true, 1, step};
    opt.zero_grad();
    core::Tensor logits = net.forward(ids, mask, {}, {}, batch, seq, rs);
    auto ce = core::cross_entropy(logits, labels);
    net.backward(core::cross_entropy_backward(ce.probs, labels));
    opt.update(1e-4, step);
    benchmark::DoNotOptimize(ce.loss);
  };
  one_step();  // warm-up: first touch of every buffer
  net.reset_attention_seconds();
  auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) one_step();
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Share of the step spent inside the attention backends (forward + backward).
  state.counters["attention_share"] = net.attention_seconds() / total;
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(batch * seq),
                                                  benchmark::Counter::kIsIterationInvariantRate);
}

void attention_only(benchmark::State& state, const std::string& name) {
  if (!attention::backends().count(backend_type(name))) {
    state.SkipWithError(("backend not registered: " + name).c_str());
    return;
  }
  attention::AttnShape shape{batch, 2, seq, 32};
  attention::AttentionOptions options;
  options.dropout = 0.1;
  core::keep_freed_host_memory();
  std::vector<std::unique_ptr<attention::Attention>> backends;
  for (int64_t l = 0; l < layers; ++l) {
    options.seed = static_cast<uint64_t>(l);
    backends.push_back(attention::make_attention(spec_for(name), shape, options));
    backends.back()->set_training(true);
  }
  core::Tensor q = core::Tensor::empty(core::Shape{batch, 2, seq, 32});
  core::Tensor k = q.clone(), v = q.clone(), dout = q.clone();
  core::fill_normal(q, 1, 0);
  core::fill_normal(k, 2, 0);
  core::fill_normal(v, 3, 0);
  core::fill_normal(dout, 4, 0);
  core::Tensor mask = core::Tensor::full(core::Shape{batch, seq}, 1.0);
  int64_t step = 0;
  auto one_step = [&] {
    ++step;
    for (auto& b : backends) {
      b->set_step(step);
      attention::Context ctx;
      core::Tensor out, dq, dk, dv;
      b->forward(q, k, v, mask, out, ctx);
      b->backward(dout, ctx, dq, dk, dv);
      benchmark::DoNotOptimize(dq.raw_data());
    }
  };
  one_step();  // warm-up
  for (auto _ : state) one_step();
}

void BM_train_step_softmax(benchmark::State& s) { train_step(s, "softmax"); }
void BM_train_step_nystrom64(benchmark::State& s) { train_step(s, "nystrom-64"); }
void BM_attention_only_softmax(benchmark::State& s) { attention_only(s, "softmax"); }
void BM_attention_only_nystrom64(benchmark::State& s) { attention_only(s, "nystrom-64"); }

BENCHMARK(BM_train_step_softmax)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_attention_only_softmax)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_train_step_nystrom64)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_attention_only_nystrom64)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
