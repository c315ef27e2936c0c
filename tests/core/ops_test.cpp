// Every op: forward against naive float64 loops written here, backward against central
// finite differences (f64, relative error < 1e-6).
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "core/ops.h"
#include "core/ops_attention.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "tests/support/grad_check.h"

namespace lra::core {
namespace {

using test::finite_difference_error;
using test::weighted_sum;

constexpr double fd_tol = 1e-6;

Tensor randn(const Shape& shape, uint64_t seed, DType dtype = DType::f64) {
  Tensor t = Tensor::empty(shape, dtype);
  fill_normal(t, seed, 0);
  return t;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  auto x = a.to_vector(), y = b.to_vector();
  double m = 0;
  for (std::size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// ------------------------------------------------------------------ GEMM
// Naive c[p] = alpha op(a[p]) op(b[p]) + beta c[p] with broadcast of batch-1 operands.
Tensor naive_gemm(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& c0,
                  double alpha, double beta) {
  int64_t m = c0.dim(-2), n = c0.dim(-1), k = ta ? a.dim(-2) : a.dim(-1);
  int64_t pa = a.numel() / (m * k), pb = b.numel() / (k * n), pc = c0.numel() / (m * n);
  int64_t p = std::max({pa, pb, pc});
  Tensor c = c0.clone();
  double* cp = c.data<double>();
  for (int64_t q = 0; q < pc; ++q)
    for (int64_t i = 0; i < m * n; ++i) cp[q * m * n + i] *= beta;
  for (int64_t q = 0; q < p; ++q) {
    const double* ap = a.data<double>() + (pa == 1 ? 0 : q * m * k);
    const double* bp = b.data<double>() + (pb == 1 ? 0 : q * k * n);
    double* out = cp + (pc == 1 ? 0 : q * m * n);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t l = 0; l < k; ++l)
          s += (ta ? ap[l * m + i] : ap[i * k + l]) * (tb ? bp[j * k + l] : bp[l * n + j]);
        out[i * n + j] += alpha * s;
      }
  }
  return c;
}

Shape mat_shape(int64_t batch, int64_t rows, int64_t cols) {
  return batch == 0 ? Shape{rows, cols} : Shape{batch, rows, cols};
}

TEST(Gemm, AllTransposesAlphaBetaAndBroadcast) {
  const int64_t m = 5, n = 4, k = 3;
  uint64_t seed = 1;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t pa : {0, 6})
        for (int64_t pb : {0, 6}) {
          Tensor a = randn(ta ? mat_shape(pa, k, m) : mat_shape(pa, m, k), seed++);
          Tensor b = randn(tb ? mat_shape(pb, n, k) : mat_shape(pb, k, n), seed++);
          int64_t pc = std::max(pa, pb);
          Tensor c = randn(mat_shape(pc, m, n), seed++);
          Tensor expected = naive_gemm(a, ta, b, tb, c, 0.7, -0.3);
          gemm(a, ta, b, tb, c, 0.7, -0.3);
          EXPECT_LT(max_abs_diff(c, expected), 1e-12) << ta << tb << pa << pb;
        }
}

TEST(Gemm, BetaZeroIgnoresGarbageAndRowBlocksSplit) {
  // 70 x 300 x 300 crosses the 32-row block boundary of the CPU kernel.
  Tensor a = randn(Shape{2, 70, 300}, 11), b = randn(Shape{2, 300, 300}, 12);
  Tensor c = Tensor::full(Shape{2, 70, 300}, std::numeric_limits<double>::quiet_NaN(), DType::f64);
  Tensor zero = Tensor::zeros(Shape{2, 70, 300}, DType::f64);
  gemm(a, false, b, false, c);
  EXPECT_LT(max_abs_diff(c, naive_gemm(a, false, b, false, zero, 1.0, 0.0)), 1e-10);
}

TEST(Gemm, SumOverBatchIntoSingleOutput) {
  Tensor a = randn(Shape{4, 3, 5}, 21), b = randn(Shape{4, 3, 2}, 22);
  Tensor c = randn(Shape{5, 2}, 23);
  Tensor expected = naive_gemm(a, true, b, false, c, 1.5, 1.0);
  gemm(a, true, b, false, c, 1.5, 1.0);
  EXPECT_LT(max_abs_diff(c, expected), 1e-12);
}

TEST(Gemm, BackwardMatchesFiniteDifferences) {
  uint64_t seed = 100;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (bool broadcast_b : {false, true}) {
        const int64_t p = 3, m = 4, n = 3, k = 5;
        Tensor a = randn(ta ? Shape{p, k, m} : Shape{p, m, k}, seed++);
        Tensor b = broadcast_b ? randn(tb ? Shape{n, k} : Shape{k, n}, seed++)
                               : randn(tb ? Shape{p, n, k} : Shape{p, k, n}, seed++);
        Tensor w = randn(Shape{p, m, n}, seed++);
        auto loss = [&] { return weighted_sum(matmul(a, b, ta, tb, 0.8), w); };
        Tensor da = Tensor::empty(a.shape(), DType::f64), db = Tensor::empty(b.shape(), DType::f64);
        matmul_backward(a, ta, b, tb, 0.8, w, &da, &db);
        EXPECT_LT(finite_difference_error(a, da, loss), fd_tol) << ta << tb << broadcast_b;
        EXPECT_LT(finite_difference_error(b, db, loss), fd_tol) << ta << tb << broadcast_b;
        // accumulate=true adds to what is there.
        Tensor da2 = da.clone();
        matmul_backward(a, ta, b, tb, 0.8, w, &da2, nullptr, true);
        EXPECT_LT(max_abs_diff(da2, scale(da, 2.0)), 1e-12);
      }
}

// ------------------------------------------------------------------ softmax
Tensor naive_softmax(const Tensor& x, const Tensor& mask, double scale_factor) {
  int64_t n = x.dim(-1), rows = x.numel() / n;
  int64_t rows_per_batch = mask.defined() ? rows / mask.dim(0) : rows;
  Tensor y = Tensor::zeros(x.shape(), DType::f64);
  for (int64_t r = 0; r < rows; ++r) {
    auto keep = [&](int64_t c) { return !mask.defined() || mask.data<double>()[(r / rows_per_batch) * n + c] != 0; };
    double mx = -INFINITY;
    for (int64_t c = 0; c < n; ++c)
      if (keep(c)) mx = std::max(mx, scale_factor * x.data<double>()[r * n + c]);
    if (mx == -INFINITY) continue;
    double s = 0;
    for (int64_t c = 0; c < n; ++c)
      if (keep(c)) s += std::exp(scale_factor * x.data<double>()[r * n + c] - mx);
    for (int64_t c = 0; c < n; ++c)
      if (keep(c)) y.data<double>()[r * n + c] = std::exp(scale_factor * x.data<double>()[r * n + c] - mx) / s;
  }
  return y;
}

TEST(Softmax, ForwardMaskedAndAllMaskedRows) {
  Tensor x = randn(Shape{2, 3, 4, 6}, 31);
  Tensor mask = Tensor::from_values(Shape{2, 6}, {1, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0}, DType::f64);
  Tensor y = softmax(x, mask, 0.5);
  EXPECT_LT(max_abs_diff(y, naive_softmax(x, mask, 0.5)), 1e-14);
  for (int64_t r = 0; r < 12; ++r) {
    EXPECT_EQ(y.data<double>()[r * 6 + 2], 0.0);  // masked entries get exactly 0
    EXPECT_EQ(y.data<double>()[r * 6 + 4], 0.0);
  }
  for (int64_t i = 72; i < 144; ++i) EXPECT_EQ(y.data<double>()[i], 0.0);  // all-masked batch
  Tensor plain = softmax(x);
  EXPECT_LT(max_abs_diff(plain, naive_softmax(x, Tensor(), 1.0)), 1e-14);
}

TEST(Softmax, LargeLogitsStayFinite) {
  for (DType dtype : {DType::f32, DType::f64}) {
    Tensor x = Tensor::from_values(Shape{2, 3}, {1e4, -1e4, 0, -1e4, -1e4, 1e4}, dtype);
    Tensor y = softmax(x);
    for (double v : y.to_vector()) EXPECT_TRUE(std::isfinite(v));
    EXPECT_NEAR(y.at({0, 0}), 1.0, 1e-6);
    EXPECT_NEAR(y.at({1, 2}), 1.0, 1e-6);
    Tensor dx = softmax_backward(y, Tensor::full(Shape{2, 3}, 1.0, dtype));
    for (double v : dx.to_vector()) EXPECT_TRUE(std::isfinite(v));
  }
}

TEST(Softmax, BackwardMatchesFiniteDifferences) {
  Tensor x = randn(Shape{2, 2, 3, 5}, 41);
  Tensor mask = Tensor::from_values(Shape{2, 5}, {1, 0, 1, 1, 1, 0, 0, 0, 0, 0}, DType::f64);
  Tensor w = randn(x.shape(), 42);
  auto loss = [&] { return weighted_sum(softmax(x, mask, 0.7), w); };
  Tensor dx = softmax_backward(softmax(x, mask, 0.7), w, 0.7);
  EXPECT_LT(finite_difference_error(x, dx, loss), fd_tol);
}

TEST(MatmulSoftmax, SameAsSoftmaxOfMatmulForwardAndBackward) {
  // Products the fused CPU kernel takes (n >= 16: [B, H] batches, a broadcast operand,
  // both transposes) and one it leaves to the two ops (n < 16); a mask with holes, and a
  // batch whose keys are all padding (rows of exactly 0). The fused path gives the same
  // bits: the same GEMM kernel per element and the softmax op's own row functions.
  struct Case {
    Shape a, b;
    bool ta, tb;
  };
  for (Case c : {Case{{2, 3, 40, 8}, {2, 3, 24, 8}, false, true},   // Q Kᵀ: [2,3,40,24]
                 Case{{2, 3, 8, 40}, {2, 3, 8, 32}, true, false},   // both from stored ᵀ
                 Case{{2, 3, 40, 8}, {8, 32}, false, false},        // broadcast b
                 Case{{2, 3, 40, 8}, {2, 3, 8, 5}, false, false}}) {  // n = 5: unfused
    for (DType dtype : {DType::f64, DType::f32}) {
      Tensor a = randn(c.a, 61, dtype), b = randn(c.b, 62, dtype);
      Tensor plain = matmul(a, b, c.ta, c.tb);
      int64_t n = plain.dim(-1);
      std::vector<double> keep(static_cast<std::size_t>(2 * n), 0.0);  // batch 1: all padding
      for (int64_t i = 0; i < n; ++i) keep[static_cast<std::size_t>(i)] = i % 3 == 1 ? 0.0 : 1.0;
      Tensor mask = Tensor::from_values(Shape{2, n}, keep, dtype);
      for (const Tensor& m : {Tensor(), mask}) {
        SCOPED_TRACE(fmt::format("a {} b {} {} mask {}", a.shape_str(), b.shape_str(),
                                 dtype == DType::f64 ? "f64" : "f32", m.defined()));
        Tensor y = matmul_softmax(a, b, c.ta, c.tb, m, 0.3);
        Tensor want = softmax(plain, m, 0.3);
        EXPECT_EQ(y.shape(), want.shape());
        EXPECT_EQ(y.to_vector(), want.to_vector());

      }
    }
  }
  Tensor a = randn(Shape{2, 4, 8}, 65), b = randn(Shape{2, 6, 8}, 66);
  EXPECT_THROW(matmul_softmax(a, b, false, false), Error);  // inner sizes 8 vs 6
  EXPECT_THROW(matmul_softmax(a, b, false, true, Tensor::full(Shape{2, 5}, 1.0)), Error);
}

TEST(SoftmaxScoresBackward, SameAsTheUnfusedOps) {
  // y = softmax(s q kᵀ), dy = g hᵀ: dq = dS k, dk = dSᵀ q with dS = softmax_backward(y, dy, s).
  // Shapes the fused CPU kernel takes (N x m and m x N score matrices, f32 and f64, a
  // masked y) and one it leaves to the ops (8 score columns < 16).
  struct Case {
    int64_t r, c, d, e;
  };
  for (Case c : {Case{40, 24, 8, 8}, Case{24, 40, 16, 32}, Case{30, 8, 8, 8}}) {
    for (DType dtype : {DType::f64, DType::f32}) {
      SCOPED_TRACE(fmt::format("r {} c {} d {} e {} {}", c.r, c.c, c.d, c.e,
                               dtype == DType::f64 ? "f64" : "f32"));
      Tensor q = randn(Shape{2, 3, c.r, c.d}, 71, dtype), k = randn(Shape{2, 3, c.c, c.d}, 72, dtype);
      Tensor g = randn(Shape{2, 3, c.r, c.e}, 73, dtype), h = randn(Shape{2, 3, c.c, c.e}, 74, dtype);
      std::vector<double> keep(static_cast<std::size_t>(2 * c.c), 1.0);
      for (int64_t i = 0; i < c.c; i += 4) keep[static_cast<std::size_t>(c.c + i)] = 0.0;
      Tensor y = softmax(matmul(q, k, false, true), Tensor::from_values(Shape{2, c.c}, keep, dtype), 0.4);
      ScoreGrads got = softmax_scores_backward(y, q, k, g, h, 0.4);
      Tensor ds = softmax_backward(y, matmul(g, h, false, true), 0.4);
      EXPECT_EQ(got.d_q.to_vector(), matmul(ds, k).to_vector());
      EXPECT_EQ(got.d_k.to_vector(), matmul(ds, q, true, false).to_vector());
      if (dtype == DType::f64) {  // and it is the gradient: loss = sum(w * softmax(s q kᵀ))
        Tensor w = matmul(g, h, false, true);
        Tensor mask = Tensor::from_values(Shape{2, c.c}, keep, dtype);
        auto loss = [&] { return weighted_sum(softmax(matmul(q, k, false, true), mask, 0.4), w); };
        EXPECT_LT(finite_difference_error(q, got.d_q, loss), fd_tol);
        EXPECT_LT(finite_difference_error(k, got.d_k, loss), fd_tol);
      }
    }
  }
  Tensor y = randn(Shape{2, 4, 5}, 75), q = randn(Shape{2, 4, 8}, 76), k = randn(Shape{2, 5, 8}, 77);
  EXPECT_THROW(softmax_scores_backward(y, q, k, q, randn(Shape{2, 6, 8}, 78)), Error);  // h rows
  EXPECT_THROW(softmax_scores_backward(y, q, k, q, randn(Shape{1, 5, 8}, 79)), Error);  // batch
}

// ------------------------------------------------------------------ layer norm
TEST(LayerNorm, ForwardAndBackward) {
  Tensor x = randn(Shape{3, 4, 7}, 51), gamma = randn(Shape{7}, 52), beta = randn(Shape{7}, 53);
  LayerNormResult r = layer_norm(x, gamma, beta, 1e-5);
  for (int64_t row = 0; row < 12; ++row) {
    const double* xr = x.data<double>() + row * 7;
    double mu = 0, var = 0;
    for (int c = 0; c < 7; ++c) mu += xr[c] / 7;
    for (int c = 0; c < 7; ++c) var += (xr[c] - mu) * (xr[c] - mu) / 7;
    for (int c = 0; c < 7; ++c) {
      double expected = (xr[c] - mu) / std::sqrt(var + 1e-5) * gamma.data<double>()[c] + beta.data<double>()[c];
      EXPECT_NEAR(r.y.data<double>()[row * 7 + c], expected, 1e-12);
    }
  }
  Tensor w = randn(x.shape(), 54);
  auto loss = [&] { return weighted_sum(layer_norm(x, gamma, beta, 1e-5).y, w); };
  LayerNormGrads g = layer_norm_backward(x, gamma, r.mean, r.rstd, w);
  EXPECT_LT(finite_difference_error(x, g.dx, loss), fd_tol);
  EXPECT_LT(finite_difference_error(gamma, g.dgamma, loss), fd_tol);
  EXPECT_LT(finite_difference_error(beta, g.dbeta, loss), fd_tol);
  // A residual gradient is added into dx in the same pass; the parameter gradients ignore it.
  Tensor res = randn(x.shape(), 55);
  LayerNormGrads gr = layer_norm_backward(x, gamma, r.mean, r.rstd, w, res);
  const std::vector<double> dx = g.dx.to_vector(), rv = res.to_vector(), got = gr.dx.to_vector();
  for (std::size_t i = 0; i < dx.size(); ++i) EXPECT_NEAR(got[i], dx[i] + rv[i], 1e-14) << i;
  EXPECT_EQ(gr.dgamma.to_vector(), g.dgamma.to_vector());
  EXPECT_EQ(gr.dbeta.to_vector(), g.dbeta.to_vector());
  EXPECT_THROW(layer_norm_backward(x, gamma, r.mean, r.rstd, w, randn(Shape{12, 6}, 56)), Error);
}

// ------------------------------------------------------------------ activations
TEST(Activations, GeluAndReluForwardBackward) {
  Tensor x = randn(Shape{5, 9}, 61);
  Tensor g = gelu(x), r = relu(x);
  for (int64_t i = 0; i < x.numel(); ++i) {
    double v = x.data<double>()[i];
    EXPECT_NEAR(g.data<double>()[i], 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))), 1e-15);
    EXPECT_EQ(r.data<double>()[i], v > 0 ? v : 0.0);
  }
  Tensor w = randn(x.shape(), 62);
  auto gelu_loss = [&] { return weighted_sum(gelu(x), w); };
  EXPECT_LT(finite_difference_error(x, gelu_backward(x, w), gelu_loss), fd_tol);
  auto relu_loss = [&] { return weighted_sum(relu(x), w); };  // no element within 1e-6 of 0
  EXPECT_LT(finite_difference_error(x, relu_backward(x, w), relu_loss), fd_tol);
}

// ------------------------------------------------------------------ elementwise
TEST(Elementwise, ForwardValues) {
  Tensor a = randn(Shape{3, 4}, 71), b = randn(Shape{3, 4}, 72), bias = randn(Shape{4}, 73);
  Tensor s = randn(Shape{3}, 74);
  Tensor sum = add(a, b), diff = sub(a, b), prod = mul(a, b), sc = scale(a, -1.5);
  Tensor biased = add_bias(a, bias), rows = scale_rows(a, s);
  Tensor acc = a.clone();
  add_into(acc, b, 0.25);
  for (int64_t i = 0; i < 12; ++i) {
    double x = a.data<double>()[i], y = b.data<double>()[i];
    EXPECT_EQ(sum.data<double>()[i], x + y);
    EXPECT_EQ(diff.data<double>()[i], x - y);
    EXPECT_EQ(prod.data<double>()[i], x * y);
    EXPECT_EQ(sc.data<double>()[i], -1.5 * x);
    EXPECT_EQ(acc.data<double>()[i], x + 0.25 * y);
    EXPECT_EQ(biased.data<double>()[i], x + bias.data<double>()[i % 4]);
    EXPECT_EQ(rows.data<double>()[i], x * s.data<double>()[i / 4]);
  }
}

TEST(Elementwise, BackwardMatchesFiniteDifferences) {
  Tensor a = randn(Shape{3, 4}, 81), b = randn(Shape{3, 4}, 82), s = randn(Shape{3}, 83);
  Tensor w = randn(Shape{3, 4}, 84);
  auto mul_loss = [&] { return weighted_sum(mul(a, b), w); };
  MulGrads mg = mul_backward(a, b, w);
  EXPECT_LT(finite_difference_error(a, mg.da, mul_loss), fd_tol);
  EXPECT_LT(finite_difference_error(b, mg.db, mul_loss), fd_tol);
  auto rows_loss = [&] { return weighted_sum(scale_rows(a, s), w); };
  ScaleRowsGrads sg = scale_rows_backward(a, s, w);
  EXPECT_LT(finite_difference_error(a, sg.dx, rows_loss), fd_tol);
  EXPECT_LT(finite_difference_error(s, sg.ds, rows_loss), fd_tol);
  Tensor bias = randn(Shape{4}, 85);
  auto bias_loss = [&] { return weighted_sum(add_bias(a, bias), w); };
  EXPECT_LT(finite_difference_error(bias, sum_leading(w), bias_loss), fd_tol);
}

// ------------------------------------------------------------------ reductions
TEST(Reductions, ValuesAndBackward) {
  Tensor x = randn(Shape{2, 3, 5}, 91);
  double total = 0;
  for (double v : x.to_vector()) total += v;
  EXPECT_NEAR(sum_all(x), total, 1e-12);
  EXPECT_NEAR(mean_all(x), total / 30, 1e-13);
  Tensor rs = sum_rows(x), rm = mean_rows(x), lead = sum_leading(x);
  EXPECT_EQ(rs.shape(), (Shape{2, 3}));
  for (int64_t r = 0; r < 6; ++r) {
    double s = 0;
    for (int c = 0; c < 5; ++c) s += x.data<double>()[r * 5 + c];
    EXPECT_NEAR(rs.data<double>()[r], s, 1e-13);
    EXPECT_NEAR(rm.data<double>()[r], s / 5, 1e-13);
  }
  for (int c = 0; c < 5; ++c) {
    double s = 0;
    for (int64_t r = 0; r < 6; ++r) s += x.data<double>()[r * 5 + c];
    EXPECT_NEAR(lead.data<double>()[c], s, 1e-13);
  }
  Tensor w = randn(Shape{2, 3}, 92);
  auto sum_loss = [&] { return weighted_sum(sum_rows(x), w); };
  EXPECT_LT(finite_difference_error(x, sum_rows_backward(w, x.shape()), sum_loss), fd_tol);
  auto mean_loss = [&] { return weighted_sum(mean_rows(x), w); };
  EXPECT_LT(finite_difference_error(x, mean_rows_backward(w, x.shape()), mean_loss), fd_tol);
}

TEST(Layout, Transpose12) {
  Tensor x = randn(Shape{2, 3, 4, 5}, 95);
  Tensor y = transpose12(x);
  EXPECT_EQ(y.shape(), (Shape{2, 4, 3, 5}));
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t c = 0; c < 4; ++c)
        for (int64_t d = 0; d < 5; ++d) EXPECT_EQ(y.at({a, c, b, d}), x.at({a, b, c, d}));
  EXPECT_EQ(transpose12(y).to_vector(), x.to_vector());
}

// ------------------------------------------------------------------ segment means
// Independent reference: segment s of n real tokens holds ranks [start(s), start(s+1))
// with the first m - n % m segments of size n / m and the rest one larger.
std::vector<int64_t> reference_sizes(int64_t n, int64_t m) {
  std::vector<int64_t> sizes;
  for (int64_t s = 0; s < m; ++s) sizes.push_back(n / m + (s >= m - n % m ? 1 : 0));
  return sizes;
}

TEST(SegmentMeans, UnevenSegmentsAndMask) {
  const int64_t batch = 2, heads = 2, seq = 11, width = 3, m = 4;
  Tensor x = randn(Shape{batch, heads, seq, width}, 101);
  std::vector<double> mv(batch * seq, 1.0);
  for (int64_t i = 7; i < seq; ++i) mv[static_cast<std::size_t>(seq + i)] = 0;  // batch 1: 7 tokens
  mv[static_cast<std::size_t>(seq + 2)] = 0;                                     // and a hole
  Tensor mask = Tensor::from_values(Shape{batch, seq}, mv, DType::f64);
  SegmentMeans r = segment_means(x, m, mask);
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int64_t> real;
    for (int64_t i = 0; i < seq; ++i)
      if (mv[static_cast<std::size_t>(b * seq + i)] != 0) real.push_back(i);
    auto sizes = reference_sizes(static_cast<int64_t>(real.size()), m);
    int64_t rank = 0;
    for (int64_t s = 0; s < m; ++s) {
      EXPECT_EQ(r.counts.at({b, s}), static_cast<double>(sizes[static_cast<std::size_t>(s)]));
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t d = 0; d < width; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < sizes[static_cast<std::size_t>(s)]; ++j)
            acc += x.at({b, h, real[static_cast<std::size_t>(rank + j)], d});
          EXPECT_NEAR(r.means.at({b, h, s, d}), acc / static_cast<double>(sizes[static_cast<std::size_t>(s)]), 1e-14);
        }
      rank += sizes[static_cast<std::size_t>(s)];
    }
  }
  EXPECT_EQ(r.counts.at({0, 0}), 2.0);  // 11 tokens into 4: 2, 3, 3, 3
  EXPECT_EQ(r.counts.at({0, 3}), 3.0);
}

TEST(SegmentMeans, IdentityWhenMEqualsN) {
  Tensor x = randn(Shape{2, 9, 4}, 111);
  SegmentMeans r = segment_means(x, 9);
  EXPECT_EQ(r.means.to_vector(), x.to_vector());
}

TEST(SegmentMeans, MoreSegmentsThanTokensLeavesEmptyOnes) {
  Tensor x = randn(Shape{1, 3, 2}, 112);
  SegmentMeans r = segment_means(x, 5);
  EXPECT_EQ(r.counts.to_vector(), (std::vector<double>{0, 0, 1, 1, 1}));
  EXPECT_EQ(r.means.at({0, 0, 0}), 0.0);
  EXPECT_EQ(r.means.at({0, 2, 1}), x.at({0, 0, 1}));
}

TEST(SegmentMeans, BackwardMatchesFiniteDifferences) {
  Tensor x = randn(Shape{2, 2, 10, 3}, 121);
  Tensor mask = Tensor::from_values(
      Shape{2, 10}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0}, DType::f64);
  Tensor w = randn(Shape{2, 2, 3, 3}, 122);
  auto loss = [&] { return weighted_sum(segment_means(x, 3, mask).means, w); };
  // Added into a gradient already holding values (padded positions keep theirs).
  Tensor base = randn(x.shape(), 123), dx = base.clone();
  segment_means_backward_add(dx, w, mask);
  EXPECT_LT(finite_difference_error(x, sub(dx, base), loss), fd_tol);
  EXPECT_EQ(dx.at({1, 0, 3, 1}), base.at({1, 0, 3, 1}));  // position 3 of sequence 1 is padding
}

// ------------------------------------------------------------------ depthwise conv
TEST(DepthwiseConv, ForwardAndBackward) {
  const int64_t batch = 2, heads = 3, seq = 8, width = 2, taps = 5;
  Tensor x = randn(Shape{batch, heads, seq, width}, 131), w = randn(Shape{heads, taps}, 132);
  Tensor y = depthwise_conv_seq(x, w);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t n = 0; n < seq; ++n)
        for (int64_t d = 0; d < width; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < taps; ++j) {
            int64_t src = n + j - taps / 2;
            if (src >= 0 && src < seq) acc += w.at({h, j}) * x.at({b, h, src, d});
          }
          EXPECT_NEAR(y.at({b, h, n, d}), acc, 1e-14);
        }
  Tensor g = randn(x.shape(), 133);
  auto loss = [&] { return weighted_sum(depthwise_conv_seq(x, w), g); };
  ConvGrads grads = depthwise_conv_seq_backward(x, w, g);
  EXPECT_LT(finite_difference_error(x, grads.dx, loss), fd_tol);
  EXPECT_LT(finite_difference_error(w, grads.dw, loss), fd_tol);
  // A kernel wider than the sequence still works (all taps but the overlap fall outside).
  Tensor wide = randn(Shape{heads, 21}, 134);
  auto wide_loss = [&] { return weighted_sum(depthwise_conv_seq(x, wide), g); };
  EXPECT_LT(finite_difference_error(wide, depthwise_conv_seq_backward(x, wide, g).dw, wide_loss), fd_tol);
  EXPECT_THROW(depthwise_conv_seq(x, randn(Shape{heads, 4}, 135)), Error);
}

TEST(DepthwiseConv, LongSequencesCrossRowTiles) {
  // 150 rows: several of the CPU kernel's row blocks, with taps reaching across blocks.
  const int64_t batch = 2, heads = 2, seq = 150, width = 3, taps = 35;
  Tensor x = randn(Shape{batch, heads, seq, width}, 136), w = randn(Shape{heads, taps}, 137);
  Tensor y = depthwise_conv_seq(x, w);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t n = 0; n < seq; ++n)
        for (int64_t d = 0; d < width; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < taps; ++j) {
            int64_t src = n + j - taps / 2;
            if (src >= 0 && src < seq) acc += w.at({h, j}) * x.at({b, h, src, d});
          }
          ASSERT_NEAR(y.at({b, h, n, d}), acc, 1e-12);
        }
  Tensor g = randn(x.shape(), 138);
  auto loss = [&] { return weighted_sum(depthwise_conv_seq(x, w), g); };
  ConvGrads grads = depthwise_conv_seq_backward(x, w, g);
  EXPECT_LT(finite_difference_error(x, grads.dx, loss), fd_tol);
  EXPECT_LT(finite_difference_error(w, grads.dw, loss), fd_tol);
}

// Direct loops in double: y[n] = sum_j w[j] x[n + j - K/2], dx = the adjoint, dw[j] =
// sum over every sequence, row and column of dy[n] x[n + j - K/2].
struct ConvReference {
  std::vector<double> y, dx, dw;
};
ConvReference conv_reference(const Tensor& x, const Tensor& w, const Tensor& dy) {
  const int64_t batch = x.dim(0), heads = x.dim(1), seq = x.dim(2), width = x.dim(3);
  const int64_t taps = w.dim(1);
  std::vector<double> xv = x.to_vector(), wv = w.to_vector(), gv = dy.to_vector();
  ConvReference r{std::vector<double>(xv.size()), std::vector<double>(xv.size()),
                  std::vector<double>(wv.size())};
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t n = 0; n < seq; ++n)
        for (int64_t j = 0; j < taps; ++j) {
          int64_t src = n + j - taps / 2;
          if (src < 0 || src >= seq) continue;
          for (int64_t d = 0; d < width; ++d) {
            auto at = [&](int64_t row) {
              return static_cast<std::size_t>(((b * heads + h) * seq + row) * width + d);
            };
            double wj = wv[static_cast<std::size_t>(h * taps + j)];
            r.y[at(n)] += wj * xv[at(src)];
            r.dx[at(src)] += wj * gv[at(n)];
            r.dw[static_cast<std::size_t>(h * taps + j)] += gv[at(n)] * xv[at(src)];
          }
        }
  return r;
}

double max_rel_diff(const std::vector<double>& got, const std::vector<double>& want) {
  double worst = 0, scale = 0;
  for (double v : want) scale = std::max(scale, std::abs(v));
  for (std::size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
  return worst / scale;
}

TEST(DepthwiseConv, RegisterBlocksMatchDirectLoops) {
  // Widths with whole vectors and a ragged rest (f64: 8 lanes, f32: 16 with AVX-512),
  // sequences with full row blocks, leftover rows and ends where taps are clipped, a
  // sequence shorter than the kernel, and tap counts that are not a multiple of the
  // backward's tap groups.
  struct Case {
    int64_t seq, width, taps;
  };
  for (Case c : {Case{100, 19, 35}, Case{77, 40, 9}, Case{61, 32, 35}, Case{20, 17, 35},
                 Case{9, 8, 3}}) {
    for (DType dtype : {DType::f64, DType::f32}) {
      SCOPED_TRACE(fmt::format("seq {} width {} taps {} {}", c.seq, c.width, c.taps,
                               dtype == DType::f64 ? "f64" : "f32"));
      Shape shape{2, 3, c.seq, c.width};
      Tensor x = randn(shape, 161, dtype), w = randn(Shape{3, c.taps}, 162, dtype);
      Tensor dy = randn(shape, 163, dtype);
      ConvReference want = conv_reference(x, w, dy);
      ConvGrads got = depthwise_conv_seq_backward(x, w, dy);
      double tol = dtype == DType::f64 ? 1e-13 : 2e-6;
      EXPECT_LT(max_rel_diff(depthwise_conv_seq(x, w).to_vector(), want.y), tol);
      EXPECT_LT(max_rel_diff(got.dx.to_vector(), want.dx), tol);
      EXPECT_LT(max_rel_diff(got.dw.to_vector(), want.dw), tol);

      // With a key mask (sequence 0 full, sequence 1 with holes and a padded tail): the
      // conv of mask_seq(x), dx zero at padded rows; the _add forms add onto what is there.
      std::vector<double> keep(static_cast<std::size_t>(2 * c.seq), 1.0);
      for (int64_t i = 0; i < c.seq; ++i)
        if (i % 5 == 2 || i >= c.seq - c.seq / 4) keep[static_cast<std::size_t>(c.seq + i)] = 0;
      Tensor mask = Tensor::from_values(Shape{2, c.seq}, keep, dtype);
      Tensor garbage = x.clone();  // padded rows of x hold values that must not matter
      ConvReference masked = conv_reference(mask_seq(garbage, mask), w, dy);
      for (std::size_t i = 0; i < masked.dx.size(); ++i) {
        std::size_t row = i / static_cast<std::size_t>(c.width);
        std::size_t b = row / static_cast<std::size_t>(3 * c.seq);
        masked.dx[i] *= keep[b * static_cast<std::size_t>(c.seq) + row % static_cast<std::size_t>(c.seq)];
      }
      EXPECT_LT(max_rel_diff(depthwise_conv_seq(garbage, w, mask).to_vector(), masked.y), tol);
      ConvGrads mg = depthwise_conv_seq_backward(garbage, w, dy, mask);
      EXPECT_LT(max_rel_diff(mg.dx.to_vector(), masked.dx), tol);
      EXPECT_LT(max_rel_diff(mg.dw.to_vector(), masked.dw), tol);
      Tensor base_y = randn(shape, 164, dtype), y = base_y.clone();
      depthwise_conv_seq_add(y, garbage, w, mask);
      EXPECT_LT(max_rel_diff(sub(y, base_y).to_vector(), masked.y), 10 * tol);
      Tensor base_dx = randn(shape, 165, dtype), dx = base_dx.clone();
      Tensor base_dw = randn(w.shape(), 166, dtype), dw = base_dw.clone();
      depthwise_conv_seq_backward_add(dx, dw, garbage, w, dy, mask);
      EXPECT_LT(max_rel_diff(sub(dx, base_dx).to_vector(), masked.dx), 10 * tol);
      EXPECT_LT(max_rel_diff(sub(dw, base_dw).to_vector(), masked.dw), 10 * tol);
    }
  }
}

// ------------------------------------------------------------------ f32 and threads
TEST(Precision, F32MatchesF64) {
  Tensor a = randn(Shape{4, 16, 32}, 141), b = randn(Shape{4, 32, 8}, 142);
  Tensor c64 = matmul(a, b), c32 = matmul(a.to(DType::f32), b.to(DType::f32));
  EXPECT_LT(max_abs_diff(c32.to(DType::f64), c64), 1e-4);
  Tensor s64 = softmax(c64, Tensor(), 0.3), s32 = softmax(c32, Tensor(), 0.3);
  EXPECT_LT(max_abs_diff(s32.to(DType::f64), s64), 1e-5);
}

TEST(Threads, ResultsIdenticalForOneAndTwoThreads) {
  int saved = num_threads();
  Tensor a = randn(Shape{3, 257, 300}, 151, DType::f32), b = randn(Shape{3, 300, 129}, 152, DType::f32);
  Tensor x = randn(Shape{40, 100, 64}, 153, DType::f32), gamma = randn(Shape{64}, 154, DType::f32);
  Tensor beta = randn(Shape{64}, 155, DType::f32), dy = randn(Shape{40, 100, 64}, 156, DType::f32);
  Tensor cx = randn(Shape{4, 2, 300, 16}, 157, DType::f32), cw = randn(Shape{2, 35}, 158, DType::f32);
  Tensor cg = randn(Shape{4, 2, 300, 16}, 159, DType::f32);
  auto run = [&] {
    std::vector<std::vector<double>> out;
    out.push_back(matmul(a, b).to_vector());
    Tensor wsum = Tensor::zeros(Shape{300, 129}, DType::f32);
    gemm(a, true, matmul(a, b), false, wsum);  // batch-summed output
    out.push_back(wsum.to_vector());
    LayerNormResult r = layer_norm(x, gamma, beta);
    LayerNormGrads g = layer_norm_backward(x, gamma, r.mean, r.rstd, dy);
    out.push_back(g.dx.to_vector());
    out.push_back(g.dgamma.to_vector());
    out.push_back(sum_leading(dy).to_vector());
    out.push_back({sum_all(dy)});
    ConvGrads cgr = depthwise_conv_seq_backward(cx, cw, cg);
    out.push_back(cgr.dw.to_vector());
    return out;
  };
  set_num_threads(1);
  auto one = run();
  set_num_threads(2);
  auto two = run();
  set_num_threads(saved);
  for (std::size_t i = 0; i < one.size(); ++i) EXPECT_EQ(one[i], two[i]) << "output " << i;
}

}  // namespace
}  // namespace lra::core
