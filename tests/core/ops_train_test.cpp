// The training ops of core/ops_train.h: forwards against naive f64 loops written here,
// backwards against central finite differences.
#include "core/ops_train.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/ops.h"
#include "core/rng.h"
#include "tests/support/grad_check.h"

namespace lra::core {
namespace {

Tensor randn(const Shape& s, uint64_t seed, double std = 1.0) {
  Tensor t = Tensor::empty(s, DType::f64);
  fill_normal(t, seed, 0, 0.0, std);
  return t;
}

Tensor mask_from(int64_t b, int64_t n, const std::vector<int64_t>& lengths) {
  std::vector<double> v(static_cast<std::size_t>(b * n), 0.0);
  for (int64_t i = 0; i < b; ++i)
    for (int64_t t = 0; t < lengths[static_cast<std::size_t>(i)]; ++t)
      v[static_cast<std::size_t>(i * n + t)] = 1;
  return Tensor::from_values(Shape{b, n}, v, DType::f64);
}

TEST(OpsTrain, EmbeddingGatherAndScatter) {
  Tensor table = randn(Shape{5, 3}, 1);
  std::vector<int32_t> ids{4, 0, 4, 2};
  Tensor y = embedding(table, ids);
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t c = 0; c < 3; ++c)
      EXPECT_EQ(y.at({r, c}), table.at({ids[static_cast<std::size_t>(r)], c}));
  Tensor w = randn(Shape{4, 3}, 2);
  Tensor grad = Tensor::zeros(Shape{5, 3}, DType::f64);
  embedding_backward(ids, w, grad);
  double err = test::finite_difference_error(
      table, grad, [&] { return test::weighted_sum(embedding(table, ids), w); });
  EXPECT_LT(err, 1e-8);
  EXPECT_THROW(embedding(table, {5}), Error);
}

TEST(OpsTrain, AddPositionsForwardBackward) {
  Tensor x = randn(Shape{2, 3, 4}, 3);
  Tensor pos = randn(Shape{5, 4}, 4);
  Tensor y = x.clone();
  add_positions(y, pos);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t c = 0; c < 4; ++c)
        EXPECT_DOUBLE_EQ(y.at({b, n, c}), x.at({b, n, c}) + pos.at({n, c}));
  Tensor w = randn(Shape{2, 3, 4}, 5);
  Tensor dpos = Tensor::zeros(Shape{5, 4}, DType::f64);
  add_positions_backward(w, dpos);
  double err = test::finite_difference_error(pos, dpos, [&] {
    Tensor z = x.clone();
    add_positions(z, pos);
    return test::weighted_sum(z, w);
  });
  EXPECT_LT(err, 1e-8);
}

TEST(OpsTrain, PrependRowForwardBackward) {
  Tensor x = randn(Shape{2, 3, 4}, 6);
  Tensor cls = randn(Shape{4}, 7);
  Tensor y = prepend_row(x, cls);
  ASSERT_EQ(y.shape(), (Shape{2, 4, 4}));
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t c = 0; c < 4; ++c) {
      EXPECT_EQ(y.at({b, 0, c}), cls.at({c}));
      for (int64_t n = 0; n < 3; ++n) EXPECT_EQ(y.at({b, n + 1, c}), x.at({b, n, c}));
    }
  Tensor w = randn(Shape{2, 4, 4}, 8);
  auto g = prepend_row_backward(w);
  auto loss = [&] { return test::weighted_sum(prepend_row(x, cls), w); };
  EXPECT_LT(test::finite_difference_error(x, g.dx, loss), 1e-8);
  EXPECT_LT(test::finite_difference_error(cls, g.dcls, loss), 1e-8);
}

TEST(OpsTrain, MaskedMeanMatchesNaiveAndGradients) {
  Tensor x = randn(Shape{3, 4, 2}, 9);
  Tensor mask = mask_from(3, 4, {4, 2, 1});
  for (bool use_mask : {true, false}) {
    Tensor m = use_mask ? mask : Tensor();
    Tensor y = masked_mean(x, m);
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t c = 0; c < 2; ++c) {
        double s = 0, cnt = 0;
        for (int64_t n = 0; n < 4; ++n)
          if (!use_mask || mask.at({b, n}) != 0) {
            s += x.at({b, n, c});
            cnt += 1;
          }
        EXPECT_NEAR(y.at({b, c}), s / cnt, 1e-14);
      }
    Tensor w = randn(Shape{3, 2}, 10);
    Tensor dx = masked_mean_backward(w, m, x.shape());
    EXPECT_LT(test::finite_difference_error(
                  x, dx, [&] { return test::weighted_sum(masked_mean(x, m), w); }),
              1e-8);
  }
}

TEST(OpsTrain, PairFeaturesForwardBackward) {
  Tensor u = randn(Shape{2, 3}, 11), v = randn(Shape{2, 3}, 12);
  Tensor y = pair_features(u, v);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t c = 0; c < 3; ++c) {
      EXPECT_EQ(y.at({b, c}), u.at({b, c}));
      EXPECT_EQ(y.at({b, 3 + c}), v.at({b, c}));
      EXPECT_DOUBLE_EQ(y.at({b, 6 + c}), u.at({b, c}) * v.at({b, c}));
      EXPECT_DOUBLE_EQ(y.at({b, 9 + c}), u.at({b, c}) - v.at({b, c}));
    }
  Tensor w = randn(Shape{2, 12}, 13);
  auto g = pair_features_backward(u, v, w);
  auto loss = [&] { return test::weighted_sum(pair_features(u, v), w); };
  EXPECT_LT(test::finite_difference_error(u, g.du, loss), 1e-8);
  EXPECT_LT(test::finite_difference_error(v, g.dv, loss), 1e-8);
}

TEST(OpsTrain, CrossEntropyMatchesNaiveAndGradient) {
  Tensor logits = randn(Shape{4, 5}, 14, 2.0);
  std::vector<int32_t> labels{0, 3, 4, 3};
  auto r = cross_entropy(logits, labels);
  double expect = 0;
  int64_t correct = 0;
  for (int64_t b = 0; b < 4; ++b) {
    double z = 0;
    int64_t arg = 0;
    for (int64_t k = 0; k < 5; ++k) {
      z += std::exp(logits.at({b, k}));
      if (logits.at({b, k}) > logits.at({b, arg})) arg = k;
    }
    expect += std::log(z) - logits.at({b, labels[static_cast<std::size_t>(b)]});
    correct += arg == labels[static_cast<std::size_t>(b)];
  }
  EXPECT_NEAR(r.loss, expect / 4, 1e-12);
  EXPECT_EQ(r.correct, correct);
  Tensor d = cross_entropy_backward(r.probs, labels);
  EXPECT_LT(
      test::finite_difference_error(logits, d, [&] { return cross_entropy(logits, labels).loss; }),
      1e-8);
  // Large logits stay finite (log-sum-exp).
  Tensor big = Tensor::from_values(Shape{1, 2}, {1000.0, -1000.0}, DType::f64);
  EXPECT_NEAR(cross_entropy(big, {1}).loss, 2000.0, 1e-9);
  EXPECT_THROW(cross_entropy(logits, {0, 1, 2, 5}), Error);
}

TEST(OpsTrain, SumSquaresAndBiasInPlace) {
  Tensor x = randn(Shape{7, 3}, 15);
  double s = 0;
  for (double v : x.to_vector()) s += v * v;
  EXPECT_NEAR(sum_squares(x), s, 1e-12);
  Tensor bias = randn(Shape{3}, 16);
  Tensor y = x.clone();
  add_bias_inplace(y, bias);
  for (int64_t r = 0; r < 7; ++r)
    for (int64_t c = 0; c < 3; ++c) EXPECT_DOUBLE_EQ(y.at({r, c}), x.at({r, c}) + bias.at({c}));
}

TEST(OpsTrain, AdamWMatchesClosedFormSteps) {
  // Three steps of AdamW over a list of two tensors (weight decay on the first only)
  // against the update written out in f64 here; the scale from the host, then from
  // global_norm_scale's result.
  Tensor w = randn(Shape{6}, 17), b = randn(Shape{2, 2}, 18);
  std::vector<Tensor*> ws{&w, &b}, ms, vs;
  std::vector<Tensor> moments;
  for (int k = 0; k < 4; ++k)
    moments.push_back(Tensor::zeros(k % 2 ? b.shape() : w.shape(), DType::f64));
  ms = {&moments[0], &moments[1]};
  vs = {&moments[2], &moments[3]};
  std::vector<std::vector<double>> ew{w.to_vector(), b.to_vector()}, em, ev;
  for (const auto& e : ew) {
    em.emplace_back(e.size(), 0.0);
    ev.emplace_back(e.size(), 0.0);
  }
  AdamWParams p;
  p.lr = 0.01;
  p.weight_decay = 0.1;
  for (int64_t step = 1; step <= 3; ++step) {
    Tensor gw = randn(w.shape(), 100 + static_cast<uint64_t>(step));
    Tensor gb = randn(b.shape(), 200 + static_cast<uint64_t>(step));
    std::vector<const Tensor*> gs{&gw, &gb};
    p.step = step;
    double scale = 0.5;
    if (step == 1) {
      p.grad_scale = scale;
      adamw_update_all(ws, gs, ms, vs, {true, false}, p);
    } else {
      Tensor ns = global_norm_scale(gs, 1.0);
      scale = ns.to_vector()[1];
      EXPECT_LT(scale, 1.0);  // 10 N(0, 1) draws: a norm above 1 (clipped)
      adamw_update_all(ws, gs, ms, vs, {true, false}, p, ns);
    }
    for (std::size_t t = 0; t < 2; ++t) {
      std::vector<double> g = gs[t]->to_vector();
      double wd = t == 0 ? 0.1 : 0.0;
      for (std::size_t i = 0; i < g.size(); ++i) {
        double gi = g[i] * scale;
        em[t][i] = 0.9 * em[t][i] + 0.1 * gi;
        ev[t][i] = 0.999 * ev[t][i] + 0.001 * gi * gi;
        double mh = em[t][i] / (1 - std::pow(0.9, step)),
               vh = ev[t][i] / (1 - std::pow(0.999, step));
        ew[t][i] = ew[t][i] - 0.01 * wd * ew[t][i] - 0.01 * mh / (std::sqrt(vh) + 1e-6);
      }
    }
  }
  for (std::size_t t = 0; t < 2; ++t) {
    std::vector<double> got = ws[t]->to_vector();
    for (std::size_t i = 0; i < got.size(); ++i)
      EXPECT_NEAR(got[i], ew[t][i], 1e-12) << t << " " << i;
  }
}

// The error names the first offending list entry.
void expect_error_naming(const std::function<void()>& call, const std::string& part) {
  try {
    call();
    ADD_FAILURE() << "no error; expected one naming \"" << part << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(OpsTrain, OptimizerListsAreValidated) {
  Tensor w0 = randn(Shape{3}, 1), w1 = randn(Shape{2, 2}, 2);
  Tensor g0 = randn(Shape{3}, 3), g1 = randn(Shape{2, 2}, 4), g1_wrong = randn(Shape{4}, 5);
  Tensor m0 = Tensor::zeros(Shape{3}, DType::f64), m1 = Tensor::zeros(Shape{2, 2}, DType::f64);
  Tensor v0 = m0.clone(), v1 = m1.clone();
  Tensor m1_f32 = Tensor::zeros(Shape{2, 2}, DType::f32);
  AdamWParams p;
  expect_error_naming(
      [&] {
        adamw_update_all({&w0, &w1}, {&g0}, {&m0, &m1}, {&v0, &v1}, {true, true}, p);
      },
      "list lengths differ");
  expect_error_naming(
      [&] {
        adamw_update_all({&w0, &w1}, {&g0, &g1}, {&m0, &m1}, {&v0, &v1}, {true}, p);
      },
      "decay 1");
  expect_error_naming(
      [&] {
        adamw_update_all({&w0, &w1}, {&g0, &g1_wrong}, {&m0, &m1}, {&v0, &v1}, {true, true}, p);
      },
      "entry 1: grad is [4]");
  expect_error_naming(
      [&] {
        adamw_update_all({&w0, &w1}, {&g0, &g1}, {&m0, &m1_f32}, {&v0, &v1}, {true, true}, p);
      },
      "entry 1: m is f32");
  Tensor undefined;
  expect_error_naming(
      [&] {
        adamw_update_all({&w0, &w1}, {&g0, &g1}, {&m0, &m1}, {&undefined, &v1}, {true, true}, p);
      },
      "entry 0 is undefined");
  Tensor w1_f32 = Tensor::zeros(Shape{2, 2}, DType::f32), g1_f32 = w1_f32.clone(),
         v1_f32 = w1_f32.clone();
  expect_error_naming(
      [&] {
        adamw_update_all({&w0, &w1_f32}, {&g0, &g1_f32}, {&m0, &m1_f32}, {&v0, &v1_f32},
                         {true, true}, p);
      },
      "entry 1 is f32, entry 0 f64");
  expect_error_naming(
      [&] {
        adamw_update_all({&w0}, {&g0}, {&m0}, {&v0}, {true}, p,
                         Tensor::zeros(Shape{2}, DType::f32));
      },
      "norm_scale must be f64 [2]");
  AdamWParams p0;
  p0.step = 0;
  expect_error_naming([&] { adamw_update_all({&w0}, {&g0}, {&m0}, {&v0}, {true}, p0); }, "step");
  expect_error_naming(
      [&] {
        global_norm_scale({&g0, &g1, &undefined}, 1.0);
      },
      "tensor 2 is undefined");
  expect_error_naming([&] { global_norm_scale({&g0, &g1_f32}, 1.0); }, "tensor 1 is f32");
  expect_error_naming([&] { global_norm_scale({&g0}, -1.0); }, "negative");
  // Empty lists are fine: no update, norm 0.
  adamw_update_all({}, {}, {}, {}, {}, p);
  EXPECT_EQ(global_norm_scale({}, 1.0).to_vector(), (std::vector<double>{0.0, 1.0}));
}

}  // namespace
}  // namespace lra::core

namespace lra::core {
namespace {

TEST(OpsTrain, DropoutKeepMaskIsAPureFunctionWithTheRightRate) {
  Tensor a = dropout_keep_mask(Shape{1000, 37}, 0.3, 5, 9);
  Tensor b = dropout_keep_mask(Shape{1000, 37}, 0.3, 5, 9, DType::f64);
  Tensor c = dropout_keep_mask(Shape{1000, 37}, 0.3, 5, 10);
  std::vector<double> va = a.to_vector(), vb = b.to_vector(), vc = c.to_vector();
  int64_t zeros = 0, differ = 0;
  for (std::size_t i = 0; i < va.size(); ++i) {
    EXPECT_TRUE(va[i] == 0.0 || std::abs(va[i] - 1.0 / 0.7) < 1e-6);
    EXPECT_EQ(va[i] == 0.0, vb[i] == 0.0);  // same draws for every dtype
    zeros += va[i] == 0.0;
    differ += (va[i] == 0.0) != (vc[i] == 0.0);
  }
  // 37000 Bernoulli(0.3): mean 11100, sd 88; allow 5 sd.
  EXPECT_NEAR(static_cast<double>(zeros), 11100.0, 440.0);
  EXPECT_GT(differ, 5000);  // another stream is another mask
  // A prefix of a larger mask equals the smaller mask (element i depends only on i).
  Tensor small = dropout_keep_mask(Shape{10}, 0.3, 5, 9);
  for (int64_t i = 0; i < 10; ++i)
    EXPECT_EQ(small.at({i}), a.to_vector()[static_cast<std::size_t>(i)]);
  Tensor none = dropout_keep_mask(Shape{4}, 0.0, 5, 9);
  for (double v : none.to_vector()) EXPECT_EQ(v, 1.0);
  EXPECT_THROW(dropout_keep_mask(Shape{4}, 1.0, 5, 9), Error);
}

// ---------------------------------------------------------------- fused block epilogues
// Each fused op against the composed ops it replaces in the encoder block, bit for bit,
// f32 and f64; 3 x 5 x 37 = 555 elements: the last Philox block is partial.
bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.bytes()) == 0;
}

class FusedEpilogues : public ::testing::TestWithParam<DType> {
 protected:
  Tensor draw(const Shape& s, uint64_t seed) { return randn(s, seed).to(GetParam()); }
};

TEST_P(FusedEpilogues, BiasDropoutAddIsTheComposedOps) {
  const Shape shape{3, 5, 37};
  const Tensor y = draw(shape, 40), bias = draw(Shape{37}, 41), residual = draw(shape, 42);
  const DropoutDraw drop{0.3, 77, 1234};
  // The block's forward: residual + (y + bias) * mask.
  Tensor biased = y.clone();
  add_bias_inplace(biased, bias);
  const Tensor mask = dropout_keep_mask(shape, drop.p, drop.seed, drop.stream, GetParam());
  const Tensor want = add(residual, mul(biased, mask));
  Tensor out = Tensor::empty(shape, GetParam());
  bias_dropout_add(y, bias, drop, residual, out);
  EXPECT_TRUE(same_bits(out, want)) << "into a new tensor";
  Tensor in_y = y.clone();
  bias_dropout_add(in_y, bias, drop, residual, in_y);
  EXPECT_TRUE(same_bits(in_y, want)) << "in place over y";
  Tensor in_residual = residual.clone();
  bias_dropout_add(y, bias, drop, in_residual, in_residual);
  EXPECT_TRUE(same_bits(in_residual, want)) << "in place over the residual";

  // The parts left out: a dropout alone (the backward), bias alone, p = 0.
  Tensor alone = Tensor::empty(shape, GetParam());
  bias_dropout_add(y, Tensor(), drop, Tensor(), alone);
  EXPECT_TRUE(same_bits(alone, mul(y, mask))) << "dropout alone";
  int64_t zeros = 0;
  for (double v : alone.to_vector()) zeros += v == 0.0;
  EXPECT_GT(zeros, 100);  // 555 x 0.3 = 166 expected
  EXPECT_LT(zeros, 240);
  Tensor no_drop = Tensor::empty(shape, GetParam());
  bias_dropout_add(y, bias, DropoutDraw{}, Tensor(), no_drop);
  EXPECT_TRUE(same_bits(no_drop, biased)) << "p = 0: the bias alone";
  Tensor other = Tensor::empty(shape, GetParam());
  bias_dropout_add(y, Tensor(), DropoutDraw{0.3, 77, 1235}, Tensor(), other);
  EXPECT_FALSE(same_bits(other, alone)) << "another stream is another mask";
}

TEST_P(FusedEpilogues, BiasGeluIsTheComposedOps) {
  const Tensor h = draw(Shape{6, 4, 29}, 43), bias = draw(Shape{29}, 44),
               dg = draw(Shape{6, 4, 29}, 45);
  Tensor z = h.clone();
  add_bias_inplace(z, bias);
  EXPECT_TRUE(same_bits(bias_gelu(h, bias), gelu(z))) << "forward";
  // The slope's a * b + c may be contracted in one file and not the other: to rounding.
  const std::vector<double> got = bias_gelu_backward(h, bias, dg).to_vector(),
                            want = gelu_backward(z, dg).to_vector();
  for (std::size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(got[i], want[i], (GetParam() == DType::f32 ? 1e-6 : 1e-15) * (1 + std::abs(want[i])))
        << "backward, element " << i;
  // And the exact GELU itself, in double, for one element.
  const double z0 = z.to_vector()[5], g0 = bias_gelu(h, bias).to_vector()[5];
  EXPECT_NEAR(g0, 0.5 * z0 * (1 + std::erf(z0 / std::sqrt(2.0))),
              GetParam() == DType::f32 ? 1e-6 : 1e-15);
}

TEST_P(FusedEpilogues, BiasHeadsFirstIsTheComposedOps) {
  const int64_t batch = 3, seq = 7, heads = 4, d = 5;
  const Tensor y = draw(Shape{batch * seq, heads * d}, 46), bias = draw(Shape{heads * d}, 47);
  Tensor biased = y.clone();
  add_bias_inplace(biased, bias);
  const Tensor want = transpose12(biased.reshape(Shape{batch, seq, heads, d}));
  const Tensor got = bias_heads_first(y, bias, batch, heads);
  EXPECT_EQ(got.shape(), (Shape{batch, heads, seq, d}));
  EXPECT_TRUE(same_bits(got, want));
  EXPECT_EQ(got.at({2, 1, 6, 3}), y.at({2 * seq + 6, 1 * d + 3}) + bias.at({1 * d + 3}));
}

TEST_P(FusedEpilogues, BadShapesAreNamed) {
  const Tensor y = draw(Shape{6, 8}, 48), bias = draw(Shape{8}, 49);
  Tensor out = Tensor::empty(Shape{6, 8}, GetParam());
  auto fails_with = [](const std::function<void()>& f, const std::string& what) {
    try {
      f();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
      return;
    }
    ADD_FAILURE() << "no error; expected one naming " << what;
  };
  fails_with([&] { bias_dropout_add(y, draw(Shape{7}, 50), {}, Tensor(), out); },
             "bias_dropout_add: bias [7]");
  fails_with([&] { bias_dropout_add(y, bias, {}, draw(Shape{6, 7}, 51), out); },
             "bias_dropout_add (residual)");
  fails_with([&] { bias_dropout_add(y, bias, {1.0, 0, 0}, Tensor(), out); },
             "probability 1 is outside [0, 1)");
  Tensor wrong = Tensor::empty(Shape{8, 6}, GetParam());
  fails_with([&] { bias_dropout_add(y, bias, {}, Tensor(), wrong); }, "bias_dropout_add (out)");
  fails_with([&] { bias_gelu(y, Tensor()); }, "bias_gelu: bias (undefined)");
  fails_with([&] { bias_gelu_backward(y, bias, draw(Shape{6, 7}, 52)); }, "bias_gelu_backward");
  fails_with([&] { bias_heads_first(y, bias, 4, 2); }, "bias_heads_first: y [6, 8]");
  fails_with([&] { bias_heads_first(y, bias, 3, 3); }, "for batch 3 and 3 heads");
}

INSTANTIATE_TEST_SUITE_P(Dtypes, FusedEpilogues, ::testing::Values(DType::f32, DType::f64),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace lra::core
