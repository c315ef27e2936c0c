// The ops of core/ops_attention.h: forward against float64 loops, backward against
// central differences.
#include "core/ops_attention.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/ops.h"
#include "support.h"
#include "tests/support/grad_check.h"

namespace lra::test {
namespace {

TEST(OpsAttention, ElementwiseMapsMatchFormulasAndDerivatives) {
  SingleThread single;
  Tensor x = randn(Shape{3, 7}, 5, 2.0);
  x.data<double>()[3] = 0.0;  // reciprocal_or_zero at 0
  Tensor w = randn(Shape{3, 7}, 6);
  Tensor e = core::elu_plus_one(x), ex = core::exp(x), r = core::reciprocal_or_zero(x);
  for (int64_t i = 0; i < x.numel(); ++i) {
    double v = x.data<double>()[i];
    EXPECT_DOUBLE_EQ(e.data<double>()[i], v > 0 ? v + 1 : std::exp(v));
    EXPECT_DOUBLE_EQ(ex.data<double>()[i], std::exp(v));
    EXPECT_DOUBLE_EQ(r.data<double>()[i], v != 0 ? 1 / v : 0.0);
  }
  EXPECT_LT(finite_difference_error(x, core::elu_plus_one_backward(x, w),
                                    [&] { return weighted_sum(core::elu_plus_one(x), w); }),
            1e-7);
  EXPECT_LT(finite_difference_error(x, core::exp_backward(core::exp(x), w),
                                    [&] { return weighted_sum(core::exp(x), w); }),
            1e-7);
  // Away from 0 for the reciprocal's difference quotient.
  Tensor y = core::exp(x);
  EXPECT_LT(
      finite_difference_error(y, core::reciprocal_or_zero_backward(core::reciprocal_or_zero(y), w),
                              [&] { return weighted_sum(core::reciprocal_or_zero(y), w); }),
      1e-7);
  EXPECT_EQ(core::reciprocal_or_zero_backward(r, w).data<double>()[3], 0.0);
}

TEST(OpsAttention, MaskSeqSelectsRowsAndIgnoresNaN) {
  for (int rank : {3, 4}) {
    Shape s = rank == 4 ? Shape{2, 3, 5, 2} : Shape{2, 5, 2};
    Tensor x = randn(s, 7);
    x.data<double>()[x.numel() - 1] = NAN;  // last row of the last sequence: padding
    Tensor mask = prefix_mask(5, {5, 3});
    Tensor y = core::mask_seq(x, mask);
    std::vector<double> xv = x.to_vector(), yv = y.to_vector();
    int64_t heads = rank == 4 ? 3 : 1;
    for (int64_t i = 0; i < x.numel(); ++i) {
      int64_t n = (i / 2) % 5, b = i / (2 * 5 * heads);
      if (mask_keep(mask, b, n))
        EXPECT_EQ(yv[static_cast<std::size_t>(i)], xv[static_cast<std::size_t>(i)]);
      else
        EXPECT_EQ(yv[static_cast<std::size_t>(i)], 0.0);
    }
  }
  EXPECT_THROW(core::mask_seq(randn(Shape{2, 5, 2}, 1), prefix_mask(4, {4, 4})), Error);
}

TEST(OpsAttention, SetRowsIdentityReplacesMaskedRows) {
  Tensor a = randn(Shape{2, 2, 3, 3}, 8);
  Tensor mask = prefix_mask(3, {3, 1});
  Tensor y = core::set_rows_identity(a, mask);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 3; ++j)
          EXPECT_EQ(y.at({b, h, i, j}),
                    mask_keep(mask, b, i) ? a.at({b, h, i, j}) : (i == j ? 1.0 : 0.0));
}

TEST(OpsAttention, PinvInitMatchesNormsAndDifferentiates) {
  SingleThread single;
  Tensor a = randn(Shape{2, 3, 4, 4}, 9);
  Tensor z = core::pinv_init(a);
  for (int64_t p = 0; p < 6; ++p) {
    const double* m = a.data<double>() + p * 16;
    double n1 = 0, ninf = 0;
    for (int i = 0; i < 4; ++i) {
      double row = 0, col = 0;
      for (int j = 0; j < 4; ++j) {
        row += std::abs(m[i * 4 + j]);
        col += std::abs(m[j * 4 + i]);
      }
      n1 = std::max(n1, col);
      ninf = std::max(ninf, row);
    }
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j)
        EXPECT_NEAR(z.data<double>()[p * 16 + i * 4 + j], m[j * 4 + i] / (n1 * ninf), 1e-15);
  }
  Tensor w = randn(a.shape(), 10);
  EXPECT_LT(finite_difference_error(a, core::pinv_init_backward(a, w),
                                    [&] { return weighted_sum(core::pinv_init(a), w); }),
            1e-7);
}

// Z' = 13/4 Z - 1/4 Z U2 with P = A Z, U1 = 7P - P P, U2 = 15P - P U1, in f64 loops.
std::vector<double> pinv_reference(const double* a, std::vector<double> z, int64_t m, int64_t iters) {
  auto mul = [m](const std::vector<double>& x, const std::vector<double>& y) {
    std::vector<double> r(static_cast<std::size_t>(m * m), 0.0);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t k = 0; k < m; ++k)
        for (int64_t j = 0; j < m; ++j)
          r[static_cast<std::size_t>(i * m + j)] +=
              x[static_cast<std::size_t>(i * m + k)] * y[static_cast<std::size_t>(k * m + j)];
    return r;
  };
  std::vector<double> am(a, a + m * m);
  for (int64_t t = 0; t < iters; ++t) {
    std::vector<double> p = mul(am, z), u1 = mul(p, p), u2;
    for (std::size_t e = 0; e < u1.size(); ++e) u1[e] = 7 * p[e] - u1[e];
    u2 = mul(p, u1);
    for (std::size_t e = 0; e < u2.size(); ++e) u2[e] = 15 * p[e] - u2[e];
    std::vector<double> zu = mul(z, u2);
    for (std::size_t e = 0; e < z.size(); ++e) z[e] = 13.0 / 4.0 * z[e] - 0.25 * zu[e];
  }
  return z;
}

TEST(OpsAttention, PinvIterateMatchesTheIterationAndConverges) {
  // Row-stochastic A (as softmax makes it): ragged sizes around the GEMM tiles, rank 3 and 4.
  for (int64_t m : {1, 5, 13, 40}) {
    for (core::DType dtype : {core::DType::f64, core::DType::f32}) {
      SCOPED_TRACE(fmt::format("m = {} {}", m, dtype == core::DType::f64 ? "f64" : "f32"));
      Shape shape = m == 13 ? Shape{3, m, m} : Shape{2, 2, m, m};
      Tensor a64 = core::softmax(randn(shape, 20 + static_cast<uint64_t>(m)), {}, 1.0);
      Tensor a = a64.to(dtype);
      core::PinvIteration r = core::pinv_iterate(a, core::pinv_init(a), 6);
      ASSERT_EQ(r.steps.size(), 6u);
      Tensor z0 = core::pinv_init(a64);
      int64_t mats = a.numel() / (m * m);
      double tol = dtype == core::DType::f64 ? 1e-11 : 2e-4;
      std::vector<double> got = r.z.to_vector();
      for (int64_t p = 0; p < mats; ++p) {
        const double* zp = z0.data<double>() + p * m * m;
        std::vector<double> want =
            pinv_reference(a64.data<double>() + p * m * m, std::vector<double>(zp, zp + m * m), m, 6);
        double scale = 0, err = 0;
        for (double v : want) scale = std::max(scale, std::abs(v));
        for (int64_t e = 0; e < m * m; ++e)
          err = std::max(err, std::abs(got[static_cast<std::size_t>(p * m * m + e)] -
                                       want[static_cast<std::size_t>(e)]));
        EXPECT_LT(err / scale, tol) << "matrix " << p;
      }
      // Each step starts where the previous one ended.
      EXPECT_EQ(r.steps[1].z.to_vector(), core::pinv_iterate(a, core::pinv_init(a), 1).z.to_vector());
    }
  }
  // Enough steps invert a well-conditioned A (half a stochastic matrix + I / 2): A Z = I.
  Tensor a = core::scale(core::softmax(randn(Shape{2, 6, 6}, 31), {}, 1.0), 0.5);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 0; i < 6; ++i) a.data<double>()[b * 36 + i * 7] += 0.5;
  Tensor az = core::matmul(a, core::pinv_iterate(a, core::pinv_init(a), 30).z);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 0; i < 6; ++i)
      for (int64_t j = 0; j < 6; ++j) EXPECT_NEAR(az.at({b, i, j}), i == j ? 1.0 : 0.0, 1e-10);
}

TEST(OpsAttention, PinvIterateIsTheBatchedGemmsBitForBit) {
  // The CPU kernel runs a matrix at a time; the same steps as whole-batch ops (the CUDA
  // path, and Nyström's code before the kernel) give the same bits, f32 at m = 64.
  Tensor a = core::softmax(randn(Shape{2, 3, 64, 64}, 51), {}, 1.0).to(core::DType::f32);
  Tensor z = core::pinv_init(a), d_z = randn(a.shape(), 52).to(core::DType::f32);
  core::PinvIteration r = core::pinv_iterate(a, z, 3);
  std::vector<core::PinvStep> steps;
  for (int j = 0; j < 3; ++j) {
    core::PinvStep s{z, core::matmul(a, z), Tensor(), Tensor()};
    s.u1 = core::scale(s.p, 7.0);
    core::gemm(s.p, false, s.p, false, s.u1, -1.0, 1.0);
    s.u2 = core::scale(s.p, 15.0);
    core::gemm(s.p, false, s.u1, false, s.u2, -1.0, 1.0);
    Tensor next = core::scale(z, 13.0 / 4.0);
    core::gemm(z, false, s.u2, false, next, -0.25, 1.0);
    EXPECT_EQ(r.steps[static_cast<std::size_t>(j)].u2.to_vector(), s.u2.to_vector()) << "step " << j;
    steps.push_back(s);
    z = next;
  }
  EXPECT_EQ(r.z.to_vector(), z.to_vector());
  Tensor d_a = Tensor::zeros(a.shape(), core::DType::f32), d_a_ref = d_a.clone();
  Tensor g = d_z;
  for (int j = 2; j >= 0; --j) {
    const core::PinvStep& s = steps[static_cast<std::size_t>(j)];
    Tensor dz = core::scale(g, 13.0 / 4.0);
    core::gemm(g, false, s.u2, true, dz, -0.25, 1.0);
    Tensor du2 = core::matmul(s.z, g, true, false, -0.25);
    Tensor dp = core::scale(du2, 15.0);
    core::gemm(du2, false, s.u1, true, dp, -1.0, 1.0);
    Tensor du1 = core::matmul(s.p, du2, true, false, -1.0);
    core::add_into(dp, du1, 7.0);
    core::gemm(du1, false, s.p, true, dp, -1.0, 1.0);
    core::gemm(s.p, true, du1, false, dp, -1.0, 1.0);
    core::gemm(dp, false, s.z, true, d_a_ref, 1.0, 1.0);
    core::gemm(a, true, dp, false, dz, 1.0, 1.0);
    g = dz;
  }
  EXPECT_EQ(core::pinv_iterate_backward(a, r.steps, d_z, d_a).to_vector(), g.to_vector());
  EXPECT_EQ(d_a.to_vector(), d_a_ref.to_vector());
}

TEST(OpsAttention, PinvIterateBackwardMatchesFiniteDifferences) {
  Tensor a = core::softmax(randn(Shape{2, 2, 7, 7}, 41), {}, 1.0);
  Tensor z0 = core::pinv_init(a);
  Tensor w = randn(a.shape(), 42);
  auto loss = [&] { return weighted_sum(core::pinv_iterate(a, z0, 4).z, w); };
  core::PinvIteration r = core::pinv_iterate(a, z0, 4);
  Tensor base = randn(a.shape(), 43), d_a = base.clone();  // d_a accumulates
  Tensor d_z0 = core::pinv_iterate_backward(a, r.steps, w, d_a);
  EXPECT_LT(finite_difference_error(z0, d_z0, loss), 1e-7);
  EXPECT_LT(finite_difference_error(a, core::sub(d_a, base), loss), 1e-7);
  // No steps: Z = Z0, its gradient passes through and A gets nothing.
  core::PinvIteration none = core::pinv_iterate(a, z0, 0);
  EXPECT_EQ(none.z.to_vector(), z0.to_vector());
  Tensor untouched = base.clone();
  EXPECT_EQ(core::pinv_iterate_backward(a, none.steps, w, untouched).to_vector(), w.to_vector());
  EXPECT_EQ(untouched.to_vector(), base.to_vector());
  EXPECT_THROW(core::pinv_iterate(a, z0, -1), Error);
  EXPECT_THROW(core::pinv_iterate(a, randn(Shape{2, 2, 7, 6}, 44), 2), Error);
}

TEST(OpsAttention, Crop2dAndItsBackward) {
  Tensor x = randn(Shape{4, 6}, 11);
  Tensor y = core::crop2d(x, 3, 5);
  ASSERT_EQ(y.shape(), (Shape{3, 5}));
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t c = 0; c < 5; ++c) EXPECT_EQ(y.at({r, c}), x.at({r, c}));
  Tensor dx = Tensor::full(Shape{4, 6}, 1.0, DType::f64);
  core::crop2d_backward_add(dx, y);
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t c = 0; c < 6; ++c)
      EXPECT_EQ(dx.at({r, c}), 1.0 + (r < 3 && c < 5 ? x.at({r, c}) : 0.0));
  EXPECT_THROW(core::crop2d(x, 5, 1), Error);
}

TEST(OpsAttention, DropoutMaskHasTheRightLawAndIsReproducible) {
  Tensor m = core::dropout_mask(Shape{200, 100}, 0.25, 3, 0, DType::f64);
  Tensor m2 = core::dropout_mask(Shape{200, 100}, 0.25, 3, 0, DType::f64);
  EXPECT_EQ(m.to_vector(), m2.to_vector());
  int64_t zeros = 0;
  for (double v : m.to_vector()) {
    ASSERT_TRUE(v == 0.0 || std::abs(v - 1.0 / 0.75) < 1e-12);
    zeros += v == 0.0;
  }
  // 20000 Bernoulli(0.25) draws: mean 5000, sd ~61; 5 sd bounds.
  EXPECT_NEAR(static_cast<double>(zeros), 5000.0, 310.0);
  EXPECT_THROW(core::dropout_mask(Shape{2}, 1.0, 0, 0), Error);
}

}  // namespace
}  // namespace lra::test
