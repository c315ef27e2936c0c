// Gradient checks in f64: modules and the whole classifier (every registered backend,
// each pooling, the retrieval head) against central finite differences of the loss.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>

#include "core/ops.h"
#include "core/ops_train.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "model/classifier.h"
#include "model/modules.h"
#include "tests/model/test_util.h"
#include "tests/support/grad_check.h"

namespace lra::model {
namespace {

using core::DType;

Tensor randn(const Shape& s, uint64_t seed, double std = 1.0) {
  Tensor t = Tensor::empty(s, DType::f64);
  core::fill_normal(t, seed, 0, 0.0, std);
  return t;
}

// Global relative error over every parameter: ||analytic - numeric|| / ||numeric||.
// (Per-tensor errors are meaningless for tensors whose true gradient is 0, e.g. the key
// bias under softmax attention.)
double params_grad_error(const std::vector<Parameter*>& params, const std::function<double()>& loss,
                         double h = 1e-5) {
  double diff2 = 0, ref2 = 0;
  for (Parameter* p : params) {
    double* x = p->value.data<double>();
    const double* a = p->grad.data<double>();
    for (int64_t i = 0; i < p->value.numel(); ++i) {
      double saved = x[i];
      x[i] = saved + h;
      double up = loss();
      x[i] = saved - h;
      double down = loss();
      x[i] = saved;
      double numeric = (up - down) / (2 * h);
      diff2 += (a[i] - numeric) * (a[i] - numeric);
      ref2 += numeric * numeric;
    }
  }
  return std::sqrt(diff2) / std::max(std::sqrt(ref2), 1e-300);
}

// Larger random parameters than the 0.02 init, so every path carries a clear gradient.
void randomize(const std::vector<Parameter*>& params, uint64_t seed) {
  uint64_t k = 0;
  for (Parameter* p : params) {
    core::fill_normal(p->value, seed + 977 * ++k, 0, 0.0, 0.4);
    if (p->name.find(".gamma") != std::string::npos)
      core::add_into(p->value, Tensor::full(p->value.shape(), 1.0, DType::f64));
  }
}

TEST(ModuleGradients, LinearAndLayerNorm) {
  Linear lin("lin", 4, 3, DType::f64, 1);
  LayerNorm ln("ln", 3, DType::f64);
  std::vector<Parameter*> params;
  lin.collect(params);
  ln.collect(params);
  randomize(params, 5);
  Tensor x = randn(Shape{5, 4}, 2);
  Tensor w = randn(Shape{5, 3}, 3);
  auto loss = [&] { return test::weighted_sum(ln.forward(lin.forward(x)), w); };
  for (Parameter* p : params) p->zero_grad();
  loss();
  Tensor dx = lin.backward(ln.backward(w));
  EXPECT_LT(params_grad_error(params, loss), 1e-7);
  loss();
  lin.backward(ln.backward(w));
  EXPECT_LT(test::finite_difference_error(x, dx, loss, 1e-5), 1e-7);
  // The accumulate form adds dx into a given tensor.
  Tensor acc = Tensor::full(x.shape(), 1.0, DType::f64);
  loss();
  Tensor none = lin.backward(ln.backward(w), &acc);
  EXPECT_FALSE(none.defined());
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t j = 0; j < 4; ++j) EXPECT_NEAR(acc.at({i, j}), 1.0 + dx.at({i, j}), 1e-12);
}

TEST(ModuleGradients, DropoutIsDeterministicInvertedAndBackpropagates) {
  Dropout drop(0.25, 3, 1);
  Tensor x = Tensor::full(Shape{64, 64}, 1.0, DType::f64);
  RunState st{true, 42, 7};
  Tensor y1 = drop.forward(x, st);
  Tensor dy = drop.backward(x);
  Tensor y2 = drop.forward(x, st);
  int64_t zeros = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    double a = y1.to_vector()[static_cast<std::size_t>(i)];
    EXPECT_EQ(a, y2.to_vector()[static_cast<std::size_t>(i)]);  // same (seed, step, layer, site)
    EXPECT_EQ(a, dy.to_vector()[static_cast<std::size_t>(i)]);  // backward uses the same mask
    EXPECT_TRUE(a == 0.0 || std::abs(a - 1.0 / 0.75) < 1e-15);
    zeros += a == 0.0;
  }
  // 4096 Bernoulli(0.25) draws: the count is 1024 +- 28 (1 sd); allow 5 sd.
  EXPECT_NEAR(static_cast<double>(zeros), 1024.0, 140.0);
  RunState other{true, 42, 8};
  drop.backward(x);
  EXPECT_NE(drop.forward(x, other).to_vector(), y1.to_vector());  // another step, another mask
  RunState eval{false, 42, 7};
  EXPECT_EQ(drop.forward(x, eval).to_vector(), x.to_vector());
}

struct TinyBatch {
  std::vector<int32_t> ids, ids2, labels;
  Tensor mask, mask2;
  int64_t batch = 3, seq = 6;
};

TinyBatch tiny_batch(bool pairs) {
  TinyBatch b;
  std::vector<int64_t> lengths{6, 4, 1}, lengths2{3, 6, 5};
  auto fill = [&](std::vector<int32_t>& ids, Tensor& mask, const std::vector<int64_t>& lens,
                  int salt) {
    std::vector<double> m(static_cast<std::size_t>(b.batch * b.seq), 0.0);
    ids.assign(static_cast<std::size_t>(b.batch * b.seq), 0);
    for (int64_t r = 0; r < b.batch; ++r)
      for (int64_t t = 0; t < lens[static_cast<std::size_t>(r)]; ++t) {
        ids[static_cast<std::size_t>(r * b.seq + t)] =
            static_cast<int32_t>(1 + (r * 5 + t * 3 + salt) % 6);
        m[static_cast<std::size_t>(r * b.seq + t)] = 1.0;
      }
    mask = Tensor::from_values(Shape{b.batch, b.seq}, m, DType::f64);
  };
  fill(b.ids, b.mask, lengths, 0);
  if (pairs) fill(b.ids2, b.mask2, lengths2, 1);
  b.labels = {1, 0, 2};
  return b;
}

ClassifierConfig tiny_config(const YAML::Node& spec, Pooling pooling, bool pairs,
                             bool learned = true) {
  ClassifierConfig c;
  c.vocab = 7;
  c.num_classes = 3;
  c.max_len = 6;
  c.dim = 8;
  c.hidden = 12;
  c.heads = 2;
  c.head_dim = 4;
  c.layers = 2;
  c.head_hidden = 10;
  c.dropout = 0;
  c.attention_dropout = 0;
  c.pooling = pooling;
  c.learned_positions = learned;
  c.pairs = pairs;
  c.batch = 3;
  c.attention = spec;
  c.context = "gradient test";
  c.dtype = DType::f64;
  c.init_seed = 11;
  return c;
}

double model_grad_error(const ClassifierConfig& config, uint64_t seed) {
  // Tiny shapes: one thread avoids OpenMP barrier costs on a busy 2-core CI machine.
  int threads = core::num_threads();
  core::set_num_threads(1);
  struct Restore {
    int n;
    ~Restore() { core::set_num_threads(n); }
  } restore{threads};
  Classifier model(config);
  randomize(model.parameters(), seed);
  TinyBatch b = tiny_batch(config.pairs);
  RunState st;  // eval mode: no dropout, no random-feature redraws
  auto loss = [&] {
    Tensor logits = model.forward(b.ids, b.mask, b.ids2, b.mask2, b.batch, b.seq, st);
    return core::cross_entropy(logits, b.labels).loss;
  };
  for (Parameter* p : model.parameters()) p->zero_grad();
  Tensor logits = model.forward(b.ids, b.mask, b.ids2, b.mask2, b.batch, b.seq, st);
  auto ce = core::cross_entropy(logits, b.labels);
  model.backward(core::cross_entropy_backward(ce.probs, b.labels));
  return params_grad_error(model.parameters(), loss);
}

void check_backend(const std::string& name) {
  if (!test::has_backend(name))
    GTEST_SKIP() << "attention backend '" << name << "' is not registered";
  YAML::Node spec = test::tiny_spec(name);
  EXPECT_LT(model_grad_error(tiny_config(spec, Pooling::mean, false), 1), 1e-6) << name << " mean";
  EXPECT_LT(model_grad_error(tiny_config(spec, Pooling::mean, true), 2), 1e-6)
      << name << " retrieval";
}

TEST(ModelGradients, Softmax) { check_backend("softmax"); }
TEST(ModelGradients, Nystrom) { check_backend("nystrom"); }
TEST(ModelGradients, Linformer) { check_backend("linformer"); }
TEST(ModelGradients, Performer) { check_backend("performer"); }
TEST(ModelGradients, Linear) { check_backend("linear"); }
TEST(ModelGradients, Skeinformer) { check_backend("skeinformer"); }

TEST(ModelGradients, OtherRegisteredBackends) {
  int checked = 0;
  for (const auto& [name, info] : attention::backends()) {
    const auto& known = test::lra_backend_names();
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    EXPECT_LT(model_grad_error(tiny_config(test::tiny_spec(name), Pooling::mean, false), 3), 1e-6)
        << name;
    ++checked;
  }
  if (checked == 0) GTEST_SKIP() << "no backends besides the LRA six are registered";
}

TEST(ModelGradients, PoolingsAndPositions) {
  std::string name = test::has_backend("softmax") ? "softmax" : "";
  if (name.empty()) GTEST_SKIP() << "attention backend 'softmax' is not registered";
  YAML::Node spec = test::tiny_spec(name);
  EXPECT_LT(model_grad_error(tiny_config(spec, Pooling::mean_all, false), 4), 1e-6) << "mean_all";
  EXPECT_LT(model_grad_error(tiny_config(spec, Pooling::cls, false), 5), 1e-6) << "cls";
  EXPECT_LT(model_grad_error(tiny_config(spec, Pooling::cls, true), 6), 1e-6) << "cls retrieval";
  EXPECT_LT(model_grad_error(tiny_config(spec, Pooling::mean, false, false), 7), 1e-6)
      << "sinusoidal";
}

TEST(ModelBehaviour, PaddingDoesNotChangeMeanPooledLogits) {
  // With mean pooling (real tokens only) and a backend that ignores padded keys, the
  // logits of a sequence do not depend on what sits in its padding.
  if (!test::has_backend("softmax"))
    GTEST_SKIP() << "attention backend 'softmax' is not registered";
  Classifier model(tiny_config(test::tiny_spec("softmax"), Pooling::mean, false));
  TinyBatch b = tiny_batch(false);
  RunState st;
  Tensor a = model.forward(b.ids, b.mask, b.ids2, b.mask2, b.batch, b.seq, st);
  std::vector<int32_t> other = b.ids;
  for (std::size_t i = 0; i < other.size(); ++i)
    if (b.mask.to_vector()[i] == 0) other[i] = 5;  // garbage in the padding
  Tensor c = model.forward(other, b.mask, b.ids2, b.mask2, b.batch, b.seq, st);
  for (int64_t i = 0; i < a.numel(); ++i)
    EXPECT_NEAR(a.to_vector()[static_cast<std::size_t>(i)],
                c.to_vector()[static_cast<std::size_t>(i)], 1e-12);
}

TEST(ModelBehaviour, InitFollowsTheLraPorts) {
  if (!test::has_backend("softmax"))
    GTEST_SKIP() << "attention backend 'softmax' is not registered";
  ClassifierConfig c = tiny_config(test::tiny_spec("softmax"), Pooling::mean, false);
  c.dim = 64;
  c.head_dim = 32;
  c.hidden = 128;
  c.vocab = 300;
  Classifier model(c);
  for (Parameter* p : model.parameters()) {
    std::vector<double> v = p->value.to_vector();
    double mean = 0, sq = 0;
    for (double x : v) mean += x;
    mean /= static_cast<double>(v.size());
    for (double x : v) sq += (x - mean) * (x - mean);
    double sd = std::sqrt(sq / static_cast<double>(v.size()));
    if (p->name.find(".gamma") != std::string::npos) {
      EXPECT_EQ(mean, 1.0) << p->name;
      EXPECT_EQ(sd, 0.0) << p->name;
      EXPECT_FALSE(p->decay);
    } else if (p->name.find(".bias") != std::string::npos ||
               p->name.find(".beta") != std::string::npos) {
      EXPECT_EQ(sd, 0.0) << p->name;
      EXPECT_EQ(mean, 0.0) << p->name;
      EXPECT_FALSE(p->decay);
    } else if (v.size() >= 1000) {
      EXPECT_NEAR(sd, 0.02, 0.002) << p->name;  // normal(0, 0.02)
      EXPECT_NEAR(mean, 0.0, 0.002) << p->name;
      EXPECT_TRUE(p->decay);
    }
  }
}

}  // namespace
}  // namespace lra::model
