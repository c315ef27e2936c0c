// core/ops_random.h: sampling distributions and invariants, gathers/scatters against
// loops, FAVOR+ feature stabilisation, Skeinformer weights, blocked log-sum-exp and its
// gradient against naive f64 loops and central differences.
#include "core/ops_random.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <vector>

#include "core/rng.h"
#include "tests/support/grad_check.h"

namespace lra::core {
namespace {

Tensor normal(const Shape& s, uint64_t seed, double scale = 1.0) {
  Tensor t = Tensor::empty(s, DType::f64);
  fill_normal(t, seed, 0, 0.0, scale);
  return t;
}

Tensor mask_of(int64_t n, const std::vector<int64_t>& real) {
  std::vector<double> v;
  for (int64_t r : real)
    for (int64_t i = 0; i < n; ++i) v.push_back(i < r ? 1.0 : 0.0);
  return Tensor::from_values(Shape{static_cast<int64_t>(real.size()), n}, v, DType::f64);
}

// One draw without replacement picks column i with probability w_i / sum(w).
TEST(SampleColumns, SingleDrawFollowsWeights) {
  Tensor w = Tensor::from_values(Shape{1, 1, 5}, {1, 2, 3, 4, 0}, DType::f64);
  const int trials = 4000;
  std::vector<int> hits(5, 0);
  for (int t = 0; t < trials; ++t) {
    IndexSample s = sample_columns(w, 1.0, 1, 1, 5, 1, {}, 1000 + t);
    ASSERT_EQ(s.valid.at({0, 0, 0}), 1.0);
    hits[static_cast<std::size_t>(s.index.at({0, 0, 0}))]++;
  }
  EXPECT_EQ(hits[4], 0);  // zero weight: never drawn while a positive one is left
  for (int i = 0; i < 4; ++i) {
    double p = (i + 1) / 10.0;
    EXPECT_NEAR(hits[static_cast<std::size_t>(i)] / double(trials), p,
                4 * std::sqrt(p * (1 - p) / trials));
  }
  // power 0.5 on squared weights gives the same distribution as the weights.
  Tensor w2 = Tensor::from_values(Shape{1, 1, 5}, {1, 4, 9, 16, 0}, DType::f64);
  for (int t = 0; t < 20; ++t)
    EXPECT_EQ(sample_columns(w2, 0.5, 1, 1, 5, 1, {}, 7 + t).index.to_vector(),
              sample_columns(w, 1.0, 1, 1, 5, 1, {}, 7 + t).index.to_vector());
}

TEST(SampleColumns, DistinctRealColumnsAndInvalidRest) {
  const int64_t B = 3, H = 2, N = 10, S = 6;
  Tensor mask = mask_of(N, {10, 4, 0});
  Tensor w = normal(Shape{B, H, N}, 5);
  for (int64_t i = 0; i < w.numel(); ++i) w.data<double>()[i] = std::abs(w.data<double>()[i]);
  w.data<double>()[3] = 0.0;  // a zero-weight real column of sequence 0
  for (const Tensor& weight : {w, Tensor()}) {
    IndexSample s = sample_columns(weight, 1.0, B, H, N, S, mask, 42);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        std::set<int64_t> seen;
        int64_t valid = 0;
        for (int64_t t = 0; t < S; ++t) {
          if (s.valid.at({b, h, t}) == 0) continue;
          ++valid;
          auto j = static_cast<int64_t>(s.index.at({b, h, t}));
          EXPECT_EQ(mask.at({b, j}), 1.0);
          EXPECT_TRUE(seen.insert(j).second);
          EXPECT_EQ(s.owner.at({b, h, t}), 1.0);
        }
        EXPECT_EQ(valid, std::min<int64_t>(S, b == 0 ? 10 : b == 1 ? 4 : 0));
      }
    if (weight.defined()) {
      // 9 positive columns for 6 draws: the zero-weight column 3 is never drawn.
      for (int64_t t = 0; t < S; ++t) EXPECT_NE(s.index.at({0, 0, t}), 3.0);
    }
  }
}

TEST(SampleRowsUniform, RealTokensUniformlyWithOwners) {
  const int64_t N = 8, S = 4000;
  Tensor mask = mask_of(N, {5, 0});
  IndexSample s = sample_rows_uniform(2, 1, N, S, mask, 3);
  std::vector<int> hits(N, 0);
  std::set<int64_t> owned;
  for (int64_t t = 0; t < S; ++t) {
    ASSERT_EQ(s.valid.at({0, 0, t}), 1.0);
    auto j = static_cast<int64_t>(s.index.at({0, 0, t}));
    ASSERT_LT(j, 5);
    hits[static_cast<std::size_t>(j)]++;
    if (s.owner.at({0, 0, t}) != 0) {
      EXPECT_TRUE(owned.insert(j).second) << "two owners";
    }
    EXPECT_EQ(s.valid.at({1, 0, t}), 0.0);  // no real token: nothing drawn
  }
  EXPECT_EQ(owned.size(), 5u);
  for (int j = 0; j < 5; ++j) EXPECT_NEAR(hits[static_cast<std::size_t>(j)] / double(S), 0.2, 0.03);
}

TEST(GatherScatter, MatchLoops) {
  Shape xs{2, 2, 5, 3};
  Tensor x = normal(xs, 1);
  Tensor idx =
      Tensor::from_values(Shape{2, 2, 3}, {0, 4, 4, 1, 1, 2, 3, 0, 2, 4, 4, 4}, DType::f64);
  Tensor w =
      Tensor::from_values(Shape{2, 2, 3}, {1, 2, 0, 1, 1, 1, 0.5, 1, 1, 1, 0, 3}, DType::f64);
  Tensor g = gather_rows(x, idx, w);
  for (int64_t p = 0; p < 4; ++p)
    for (int64_t s = 0; s < 3; ++s)
      for (int64_t c = 0; c < 3; ++c) {
        double ww = w.data<double>()[p * 3 + s];
        auto row = static_cast<int64_t>(idx.data<double>()[p * 3 + s]);
        EXPECT_EQ(g.data<double>()[(p * 3 + s) * 3 + c],
                  ww * x.data<double>()[(p * 5 + row) * 3 + c]);
      }
  // add is the adjoint of gather: <gather(x), y> = <x, scatter_add(y)>.
  Tensor y = normal(g.shape(), 2);
  Tensor back = Tensor::zeros(xs, DType::f64);
  scatter_rows(back, idx, w, y, ScatterMode::add);
  EXPECT_NEAR(test::weighted_sum(g, y), test::weighted_sum(x, back), 1e-12);
  // assign: last slot with nonzero weight wins; zero clears.
  Tensor a = x.clone();
  scatter_rows(a, idx, w, y, ScatterMode::assign);
  for (int64_t c = 0; c < 3; ++c) {
    EXPECT_EQ(a.at({0, 0, 4, c}), y.at({0, 0, 1, c}));  // slot 2 has weight 0
    EXPECT_EQ(a.at({1, 1, 4, c}), y.at({1, 1, 2, c}));
    EXPECT_EQ(a.at({0, 0, 2, c}), x.at({0, 0, 2, c}));
  }
  scatter_rows(a, idx, w, {}, ScatterMode::zero);
  for (int64_t c = 0; c < 3; ++c) EXPECT_EQ(a.at({0, 1, 2, c}), 0.0);
  Tensor bad =
      Tensor::from_values(Shape{2, 2, 3}, {0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, DType::f64);
  EXPECT_THROW(gather_rows(x, bad), Error);
}

// exp(u - |x|^2/2 - c)/sqrt(m): the ratio of features between rows of one sequence
// (keys) or between features of one row (queries) is the unstabilised one, and huge
// exponents stay finite.
TEST(FavorFeatures, StabilisedRatiosMatchDirectExponentials) {
  Shape us{1, 1, 4, 6}, xs{1, 1, 4, 3};
  Tensor u = normal(us, 1, 3.0), x = normal(xs, 2);
  for (int64_t i = 0; i < 6; ++i) u.data<double>()[i] += 800;  // exp would overflow
  Tensor mask = mask_of(4, {3});
  Tensor pk = favor_exp_features(u, x, mask, true);
  Tensor pq = favor_exp_features(u, x, {}, false);
  auto expo = [&](int64_t r, int64_t i) {
    double sq = 0;
    for (int64_t c = 0; c < 3; ++c) sq += x.at({0, 0, r, c}) * x.at({0, 0, r, c});
    return u.at({0, 0, r, i}) - 0.5 * sq;
  };
  double max_k = -1e300;
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t i = 0; i < 6; ++i) max_k = std::max(max_k, expo(r, i));
  for (int64_t r = 0; r < 4; ++r) {
    double max_q = -1e300;
    for (int64_t i = 0; i < 6; ++i) max_q = std::max(max_q, expo(r, i));
    for (int64_t i = 0; i < 6; ++i) {
      EXPECT_NEAR(pq.at({0, 0, r, i}), std::exp(expo(r, i) - max_q) / std::sqrt(6.0), 1e-14);
      double want = r < 3 ? std::exp(expo(r, i) - max_k) / std::sqrt(6.0) : 0.0;  // row 3 padded
      EXPECT_NEAR(pk.at({0, 0, r, i}), want, 1e-14);
    }
  }
  Tensor pr = relu_features(u, 0.01, mask);
  EXPECT_EQ(pr.at({0, 0, 3, 0}), 0.0);
  EXPECT_EQ(pr.at({0, 0, 1, 2}), std::max(u.at({0, 0, 1, 2}), 0.0) + 0.01);
}

TEST(SkeinWeights, AdaptiveFillInAgainstLoops) {
  Shape ls{1, 1, 3, 4};
  Tensor l = normal(ls, 3);
  Tensor valid = Tensor::from_values(Shape{1, 1, 4}, {1, 1, 0, 1}, DType::f64);
  Tensor mask = mask_of(3, {3});  // 3 real keys, 3 valid slots: no fill-in
  Tensor mask7 = mask_of(7, {6});
  Tensor l7 = normal(Shape{1, 1, 7, 4}, 4);
  SkeinWeights w = skein_weights(l7, valid, mask7, SkeinNorm::adaptive);
  for (int64_t r = 0; r < 7; ++r) {
    // Ratios are shift-free: E_s / dhat = exp(L_s) / (sum exp(L) + 3 exp(mean L)).
    double tot = 0, mean = 0;
    for (int64_t s : {0, 1, 3}) {
      tot += std::exp(l7.at({0, 0, r, s}));
      mean += l7.at({0, 0, r, s}) / 3;
    }
    double dhat = tot + 3 * std::exp(mean);
    for (int64_t s : {0, 1, 3})
      EXPECT_NEAR(w.e.at({0, 0, r, s}) / w.dhat.at({0, 0, r}), std::exp(l7.at({0, 0, r, s})) / dhat,
                  1e-14);
    EXPECT_EQ(w.e.at({0, 0, r, 2}), 0.0);
    EXPECT_NEAR(w.g.at({0, 0, r}) / w.dhat.at({0, 0, r}), std::exp(mean) / dhat, 1e-14);
  }
  SkeinWeights full = skein_weights(l, valid, mask, SkeinNorm::adaptive);
  for (int64_t r = 0; r < 3; ++r) EXPECT_EQ(full.g.at({0, 0, r}), 0.0);
}

TEST(MaskedLogSumExp, MatchesLoopsAndCentralDifferences) {
  Shape s{2, 1, 70, 3};  // more rows than one block of 64
  Tensor q = normal(s, 11), k = normal(s, 12);
  Tensor mask = mask_of(70, {70, 33});
  const double scale = 0.6;
  Tensor lse = masked_logsumexp(q, k, mask, scale);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 0; i < 70; i += 7) {
      double tot = 0;
      for (int64_t j = 0; j < (b == 0 ? 70 : 33); ++j) {
        double d = 0;
        for (int64_t c = 0; c < 3; ++c) d += q.at({b, 0, i, c}) * k.at({b, 0, j, c});
        tot += std::exp(scale * d);
      }
      EXPECT_NEAR(lse.at({b, 0, i}), std::log(tot), 1e-12);
    }
  Tensor w = normal(lse.shape(), 13);
  Tensor dq = Tensor::zeros(s, DType::f64), dk = Tensor::zeros(s, DType::f64);
  masked_logsumexp_backward(q, k, mask, scale, lse, w, dq, dk);
  auto loss = [&] { return test::weighted_sum(masked_logsumexp(q, k, mask, scale), w); };
  EXPECT_LT(test::finite_difference_error(q, dq, loss), 1e-7);
  EXPECT_LT(test::finite_difference_error(k, dk, loss), 1e-7);
  for (int64_t j = 33; j < 70; ++j) EXPECT_EQ(dk.at({1, 0, j, 0}), 0.0);
}

}  // namespace
}  // namespace lra::core
