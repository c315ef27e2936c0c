// Skeinformer: gradients with the drawn index sets held fixed (and checked to stay fixed),
// a naive f64 reference of every normalisation given the drawn indices, exactness when
// every column is drawn, ablation switches, determinism, masking.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "support.h"
#include "tests/support/grad_check.h"

namespace lra::test {
namespace {

struct SkeinCase {
  std::string spec;
  bool padded;
};

class SkeinGradient : public ::testing::TestWithParam<SkeinCase> {};

TEST_P(SkeinGradient, MatchesCentralDifferences) {
  const auto& c = GetParam();
  SCOPED_TRACE(c.spec + (c.padded ? " (padded)" : ""));
  Shape s{2, 2, 7, 3};
  auto attn = make_backend(c.spec, {2, 2, 7, 3}, 13);
  Tensor q = randn(s, 1), k = randn(s, 2), v = randn(s, 3), w = randn(s, 4);
  Tensor mask = c.padded ? prefix_mask(7, {7, 5}) : Tensor();
  attention::Context ctx;
  Tensor out, dq, dk, dv;
  attn->forward(q, k, v, mask, out, ctx);
  attn->backward(w, ctx, dq, dk, dv);
  ASSERT_EQ(dq.shape(), s);
  ASSERT_EQ(dk.shape(), s);
  ASSERT_EQ(dv.shape(), s);
  // The importance-sampled columns depend on q, k, v; the check is only meaningful if the
  // perturbations never change them (they are drawn from fixed uniforms, so they do not).
  auto columns = ctx.at("col_index").to_vector();
  int changed = 0;
  auto loss = [&] {
    attention::Context c2;
    Tensor o;
    attn->forward(q, k, v, mask, o, c2);
    changed += c2.at("col_index").to_vector() != columns;
    return weighted_sum(o, w);
  };
  EXPECT_LT(finite_difference_error(q, dq, loss), 1e-6) << "d_q";
  EXPECT_LT(finite_difference_error(k, dk, loss), 1e-6) << "d_k";
  EXPECT_LT(finite_difference_error(v, dv, loss), 1e-6) << "d_v";
  EXPECT_EQ(changed, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Switches, SkeinGradient,
    ::testing::Values(SkeinCase{"{type: skeinformer, samples: 3}", false},
                      SkeinCase{"{type: skeinformer, samples: 3}", true},
                      SkeinCase{"{type: skeinformer, samples: 2, column_sampling: uniform}", true},
                      SkeinCase{"{type: skeinformer, samples: 3, normalization: simple}", true},
                      SkeinCase{"{type: skeinformer, samples: 3, normalization: none}", false},
                      SkeinCase{"{type: skeinformer, samples: 3, normalization: none}", true},
                      SkeinCase{"{type: skeinformer, samples: 4, pilot_reuse: false}", true},
                      SkeinCase{"{type: skeinformer, samples: 9}", true}));

enum class Norm { adaptive, simple, none };

// Naive f64 loops of the Skeinformer output given the drawn columns and pilot rows.
std::vector<double> skein_reference(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& mask, const attention::Context& ctx, Norm norm,
                                    bool reuse) {
  int64_t B = q.dim(0), H = q.dim(1), N = q.dim(2), D = q.dim(3);
  const Tensor& ci = ctx.at("col_index");
  const Tensor& cv = ctx.at("col_valid");
  int64_t S = ci.dim(2);
  double scale = 1.0 / std::sqrt(static_cast<double>(D));
  auto dot = [&](int64_t b, int64_t h, int64_t i, int64_t j) {
    double x = 0;
    for (int64_t d = 0; d < D; ++d) x += q.at({b, h, i, d}) * k.at({b, h, j, d});
    return x * scale;
  };
  std::vector<double> out(static_cast<std::size_t>(B * H * N * D), 0.0);
  auto exact = naive_softmax_attention(q, k, v, mask);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      std::vector<int64_t> sel;
      for (int64_t s = 0; s < S; ++s)
        if (cv.at({b, h, s}) != 0) sel.push_back(static_cast<int64_t>(ci.at({b, h, s})));
      int64_t n = 0;
      for (int64_t j = 0; j < N; ++j) n += mask_keep(mask, b, j);
      for (int64_t i = 0; i < N; ++i) {
        double num[16] = {0}, den = 0, mean = 0;
        for (int64_t j : sel) {
          double l = dot(b, h, i, j), a = std::exp(l);
          mean += l / static_cast<double>(sel.size());
          den += a;
          for (int64_t d = 0; d < D; ++d) num[d] += a * v.at({b, h, j, d});
        }
        if (norm == Norm::adaptive && n > static_cast<int64_t>(sel.size())) {
          double g = std::exp(mean);
          den += g * static_cast<double>(n - static_cast<int64_t>(sel.size()));
          for (int64_t j = 0; j < N; ++j)
            if (mask_keep(mask, b, j) && std::find(sel.begin(), sel.end(), j) == sel.end())
              for (int64_t d = 0; d < D; ++d) num[d] += g * v.at({b, h, j, d});
        }
        if (norm == Norm::none) {
          den = 0;
          for (int64_t j = 0; j < N; ++j)
            if (mask_keep(mask, b, j)) den += std::exp(dot(b, h, i, j));
        }
        for (int64_t d = 0; d < D; ++d)
          out[static_cast<std::size_t>(((b * H + h) * N + i) * D + d)] = den > 0 ? num[d] / den : 0;
      }
      if (reuse) {
        const Tensor& pi = ctx.at("pilot_index");
        const Tensor& pv = ctx.at("pilot_valid");
        for (int64_t s = 0; s < pi.dim(2); ++s) {
          if (pv.at({b, h, s}) == 0) continue;
          auto i = static_cast<int64_t>(pi.at({b, h, s}));
          EXPECT_TRUE(mask_keep(mask, b, i)) << "pilot row on a padded token";
          for (int64_t d = 0; d < D; ++d) {
            auto at = static_cast<std::size_t>(((b * H + h) * N + i) * D + d);
            out[at] = exact[at];
          }
        }
      }
    }
  return out;
}

TEST(Skeinformer, MatchesNaiveReferenceGivenDrawnIndices) {
  const int64_t B = 2, H = 2, N = 11, D = 4;
  Shape s{B, H, N, D};
  Tensor q = randn(s, 31), k = randn(s, 32), v = randn(s, 33);
  Tensor mask = prefix_mask(N, {11, 8});
  struct Variant {
    const char* spec;
    Norm norm;
    bool reuse;
  };
  for (const Variant& var :
       {Variant{"{type: skeinformer, samples: 4}", Norm::adaptive, true},
        Variant{"{type: skeinformer, samples: 4, pilot_reuse: false}", Norm::adaptive, false},
        Variant{"{type: skeinformer, samples: 5, column_sampling: uniform}", Norm::adaptive, true},
        Variant{"{type: skeinformer, samples: 4, normalization: simple}", Norm::simple, true},
        Variant{"{type: skeinformer, samples: 4, normalization: none, pilot_reuse: false}",
                Norm::none, false}}) {
    SCOPED_TRACE(var.spec);
    auto attn = make_backend(var.spec, {B, H, N, D}, 3);
    attention::Context ctx;
    Tensor out;
    attn->forward(q, k, v, mask, out, ctx);
    // Drawn columns are distinct real keys, min(samples, real) of them.
    const Tensor& ci = ctx.at("col_index");
    const Tensor& cv = ctx.at("col_valid");
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        std::set<int64_t> seen;
        for (int64_t t = 0; t < ci.dim(2); ++t)
          if (cv.at({b, h, t}) != 0) {
            auto j = static_cast<int64_t>(ci.at({b, h, t}));
            EXPECT_TRUE(mask_keep(mask, b, j));
            EXPECT_TRUE(seen.insert(j).second) << "column drawn twice";
          }
        EXPECT_EQ(static_cast<int64_t>(seen.size()), std::min<int64_t>(ci.dim(2), b == 0 ? 11 : 8));
      }
    auto ref = skein_reference(q, k, v, mask, ctx, var.norm, var.reuse);
    EXPECT_LT(max_diff_real_rows(out.to_vector(), ref, s, mask), 1e-12);
  }
}

// samples >= real tokens draws every real key: the fill-in vanishes and every variant is
// exact softmax attention.
TEST(Skeinformer, ExactWhenEveryColumnIsSelected) {
  const int64_t B = 2, H = 2, N = 9, D = 3;
  Shape s{B, H, N, D};
  Tensor q = randn(s, 41, 1.5), k = randn(s, 42, 1.5), v = randn(s, 43);
  for (bool padded : {false, true}) {
    Tensor mask = padded ? prefix_mask(N, {9, 6}) : Tensor();
    auto exact = naive_softmax_attention(q, k, v, mask);
    for (const char* spec :
         {"{type: skeinformer, samples: 9}", "{type: skeinformer, samples: 256}",
          "{type: skeinformer, samples: 9, column_sampling: uniform, pilot_reuse: false}",
          "{type: skeinformer, samples: 12, normalization: simple}",
          "{type: skeinformer, samples: 9, normalization: none}"}) {
      SCOPED_TRACE(std::string(spec) + (padded ? " (padded)" : ""));
      auto attn = make_backend(spec, {B, H, N, D}, 5);
      attention::Context ctx;
      Tensor out;
      attn->forward(q, k, v, mask, out, ctx);
      EXPECT_LT(max_diff_real_rows(out.to_vector(), exact, s, mask), 1e-10);
    }
  }
}

Tensor skein_run(const std::string& spec, uint64_t seed, int64_t step, const Tensor& q,
                 const Tensor& k, const Tensor& v, const Tensor& mask) {
  auto attn = make_backend(spec, {q.dim(0), q.dim(1), q.dim(2), q.dim(3)}, seed);
  attn->set_step(step);
  attention::Context ctx;
  Tensor out;
  attn->forward(q, k, v, mask, out, ctx);
  return out;
}

double skein_max_abs_diff(const Tensor& a, const Tensor& b) {
  double worst = 0;
  auto x = a.to_vector(), y = b.to_vector();
  for (std::size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
  return worst;
}

TEST(Skeinformer, EachAblationSwitchChangesTheOutput) {
  Shape s{2, 2, 23, 4};
  Tensor q = randn(s, 51), k = randn(s, 52), v = randn(s, 53);
  Tensor mask = prefix_mask(23, {23, 17});
  Tensor base = skein_run("{type: skeinformer, samples: 5}", 1, 0, q, k, v, mask);
  for (const char* spec : {"{type: skeinformer, samples: 5, column_sampling: uniform}",
                           "{type: skeinformer, samples: 5, normalization: simple}",
                           "{type: skeinformer, samples: 5, normalization: none}",
                           "{type: skeinformer, samples: 5, pilot_reuse: false}"}) {
    SCOPED_TRACE(spec);
    EXPECT_GT(skein_max_abs_diff(base, skein_run(spec, 1, 0, q, k, v, mask)), 1e-3);
  }
}

TEST(Skeinformer, DrawsArePureFunctionsOfSeedAndStep) {
  Shape s{2, 2, 15, 4};
  Tensor q = randn(s, 61), k = randn(s, 62), v = randn(s, 63);
  Tensor mask = prefix_mask(15, {15, 10});
  const std::string spec = "{type: skeinformer, samples: 4}";
  Tensor a = skein_run(spec, 7, 3, q, k, v, mask);
  EXPECT_EQ(a.to_vector(), skein_run(spec, 7, 3, q, k, v, mask).to_vector());
  EXPECT_GT(skein_max_abs_diff(a, skein_run(spec, 7, 4, q, k, v, mask)), 1e-6);
  EXPECT_GT(skein_max_abs_diff(a, skein_run(spec, 8, 3, q, k, v, mask)), 1e-6);
}

TEST(Skeinformer, GarbageInPaddedKeysIsIgnoredAndEmptySequencesGiveZero) {
  const int64_t B = 3, H = 2, N = 12, D = 4;
  Shape s{B, H, N, D};
  Tensor mask = prefix_mask(N, {12, 7, 0});
  Tensor q = randn(s, 71), k = randn(s, 72), v = randn(s, 73);
  Tensor junk = randn(s, 74, 50.0);
  Tensor k2 = garble_padded_rows(k, mask, junk), v2 = garble_padded_rows(v, mask, junk, -1.0);
  for (const char* spec :
       {"{type: skeinformer, samples: 4}", "{type: skeinformer, samples: 4, normalization: none}",
        "{type: skeinformer, samples: 3, column_sampling: uniform}"}) {
    SCOPED_TRACE(spec);
    auto attn = make_backend(spec, {B, H, N, D}, 5);
    attention::Context c1, c2;
    Tensor o1, o2, dq, dk, dv;
    attn->forward(q, k, v, mask, o1, c1);
    attn->forward(q, k2, v2, mask, o2, c2);
    EXPECT_EQ(max_diff_real_rows(o1.to_vector(), o2.to_vector(), s, mask), 0.0);
    for (int64_t i = 2 * H * N * D; i < B * H * N * D; ++i) EXPECT_EQ(o1.data<double>()[i], 0.0);
    attn->backward(randn(s, 75), c2, dq, dk, dv);
    for (const Tensor* t : {&dq, &dk, &dv})
      for (double x : t->to_vector()) ASSERT_TRUE(std::isfinite(x));
    for (int64_t j = 7; j < N; ++j)
      for (int64_t d = 0; d < D; ++d) {
        EXPECT_EQ(dk.at({1, 1, j, d}), 0.0);
        EXPECT_EQ(dv.at({1, 0, j, d}), 0.0);
      }
  }
}

// Row maxima (and the exact log row sums of `none`) keep f32 finite at huge logits.
TEST(Skeinformer, LargeLogitsStayFiniteInF32) {
  Shape s{1, 2, 40, 8};
  Tensor q = randn(s, 1, 20.0, DType::f32), k = randn(s, 2, 20.0, DType::f32);
  Tensor v = randn(s, 3, 1.0, DType::f32);
  Tensor mask = prefix_mask(40, {31}, DType::f32);
  for (const char* spec :
       {"{type: skeinformer, samples: 8}", "{type: skeinformer, samples: 8, normalization: simple}",
        "{type: skeinformer, samples: 8, normalization: none}"}) {
    SCOPED_TRACE(spec);
    auto attn = make_backend(spec, {1, 2, 40, 8}, 1, DType::f32);
    attention::Context ctx;
    Tensor out, dq, dk, dv;
    attn->forward(q, k, v, mask, out, ctx);
    attn->backward(randn(s, 4, 1.0, DType::f32), ctx, dq, dk, dv);
    for (const Tensor* t : {&out, &dq, &dk, &dv})
      for (double x : t->to_vector()) ASSERT_TRUE(std::isfinite(x));
  }
}

TEST(Skeinformer, SpecAndCost) {
  EXPECT_THROW(make_backend("{type: skeinformer, samples: 0}", {1, 1, 8, 4}), Error);
  EXPECT_THROW(make_backend("{type: skeinformer, column_sampling: norm}", {1, 1, 8, 4}), Error);
  EXPECT_THROW(make_backend("{type: skeinformer, normalization: full}", {1, 1, 8, 4}), Error);
  EXPECT_THROW(make_backend("{type: skeinformer, pilot_reuse: maybe}", {1, 1, 8, 4}), Error);
  EXPECT_THROW(make_backend("{type: skeinformer, sample: 8}", {1, 1, 8, 4}), Error);
  AttnShape s1{1, 2, 4096, 32}, s2{1, 2, 8192, 32};
  auto a = make_backend("{type: skeinformer, samples: 256}", s2);
  double r = a->cost(s2).forward_flops / a->cost(s1).forward_flops;
  EXPECT_GT(r, 1.9);
  EXPECT_LT(r, 2.1);  // linear in N at fixed samples
  auto none = make_backend("{type: skeinformer, samples: 256, normalization: none}", s2);
  EXPECT_GT(none->cost(s2).forward_flops / none->cost(s1).forward_flops, 3.0);  // exact row sums
}

}  // namespace
}  // namespace lra::test
