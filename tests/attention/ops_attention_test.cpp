// The ops of core/ops_attention.h: forward against float64 loops, backward against
// central differences.
#include "core/ops_attention.h"

#include <gtest/gtest.h>

#include <cmath>

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
