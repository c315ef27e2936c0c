// model::training_step_count: its parameter count against the built classifier, its GEMM
// FLOPs against an independent count, how it scales, and the roofline's bounds.
#include "model/step_count.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <string>

#include "attention/attention.h"

namespace lra::test {
namespace {

model::ClassifierConfig tiny(const std::string& attention, int64_t max_len) {
  model::ClassifierConfig c;
  c.vocab = 20;
  c.num_classes = 5;
  c.max_len = max_len;
  c.dim = 16;
  c.hidden = 24;
  c.heads = 2;
  c.head_dim = 8;
  c.layers = 2;
  c.head_hidden = 12;
  c.batch = 3;
  c.attention = YAML::Load(attention);
  return c;
}

double parameter_numel(const model::ClassifierConfig& c) {
  model::Classifier net(c);
  double n = 0;
  for (const auto* p : net.parameters()) n += static_cast<double>(p->value.numel());
  return n;
}

TEST(StepCount, ParametersMatchTheBuiltClassifier) {
  for (const char* spec : {"{type: softmax}", "{type: nystrom, landmarks: 4}",
                           "{type: linformer, k: 8}", "{type: linear}"}) {
    auto c = tiny(spec, 32);
    EXPECT_EQ(model::training_step_count(c, 3, 32).parameters, parameter_numel(c)) << spec;
    c.pooling = model::Pooling::cls;
    EXPECT_EQ(model::training_step_count(c, 3, 32).parameters, parameter_numel(c)) << spec;
    c.pooling = model::Pooling::mean;
    c.pairs = true;
    EXPECT_EQ(model::training_step_count(c, 3, 32).parameters, parameter_numel(c)) << spec;
    c.pairs = false;
    c.learned_positions = false;
    EXPECT_EQ(model::training_step_count(c, 3, 32).parameters, parameter_numel(c)) << spec;
  }
}

TEST(StepCount, FlopsAreTheLayersGemmsAndAttentionPlusSmallTerms) {
  const int64_t batch = 4, seq = 64;
  auto c = tiny("{type: softmax}", seq);
  auto count = model::training_step_count(c, batch, seq);
  // Independent count: per layer, the forward GEMMs of Wq, Wk, Wv, Wo, FFN1, FFN2 and twice
  // as much backward (dx and dW), plus the backend's cost().
  const double rows = batch * seq, C = 16, A = 16, F = 24;
  const double gemms = 3 * 2 * rows * (4 * C * A + 2 * C * F);
  attention::AttentionOptions o;
  auto backend = attention::make_attention(c.attention, {batch, 2, seq, 8}, o);
  auto cost = backend->cost({batch, 2, seq, 8});
  const double expected = 2 * (gemms + cost.forward_flops + cost.backward_flops);
  // Everything else (biases, LayerNorms, GELU, dropout, head, AdamW) is a small addition.
  EXPECT_GT(count.flops(), expected);
  EXPECT_LT(count.flops(), 1.25 * expected);
  // One more layer adds one layer's work.
  c.layers = 3;
  auto three = model::training_step_count(c, batch, seq);
  EXPECT_NEAR(three.flops() - count.flops(), expected / 2, 0.25 * expected / 2);
  EXPECT_GT(three.bytes(), count.bytes());
  EXPECT_GT(three.memory_bytes, count.memory_bytes);
}

TEST(StepCount, PairsDoubleTheEncoderWork) {
  auto c = tiny("{type: linear}", 128);
  auto single = model::training_step_count(c, 4, 128);
  c.pairs = true;
  auto pairs = model::training_step_count(c, 4, 128);
  EXPECT_GT(pairs.flops(), 1.8 * single.flops());
  EXPECT_LT(pairs.flops(), 2.05 * single.flops());
  EXPECT_GT(pairs.bytes(), 1.8 * single.bytes());
}

TEST(StepCount, RooflineIsBetweenTheLargerCeilingAndTheSum) {
  auto c = tiny("{type: nystrom, landmarks: 8}", 256);
  auto count = model::training_step_count(c, 8, 256);
  ASSERT_FALSE(count.ops.empty());
  for (const auto& op : count.ops) {
    EXPECT_GE(op.flops, 0) << op.name;
    EXPECT_GT(op.bytes, 0) << op.name;
    EXPECT_GE(op.runs, 1) << op.name;
  }
  const double flops_per_s = 1e12, bytes_per_s = 1e11;
  const double t = count.roofline_seconds(flops_per_s, bytes_per_s);
  const double f = count.flops() / flops_per_s, b = count.bytes() / bytes_per_s;
  EXPECT_GE(t, std::max(f, b) * (1 - 1e-12));
  EXPECT_LE(t, (f + b) * (1 + 1e-12));
  // Faster memory can only shorten the prediction.
  EXPECT_LE(count.roofline_seconds(flops_per_s, 10 * bytes_per_s), t);
  EXPECT_THROW(count.roofline_seconds(0, bytes_per_s), Error);
  EXPECT_THROW(model::training_step_count(c, 8, 257), Error);  // longer than max_len
}

}  // namespace
}  // namespace lra::test
