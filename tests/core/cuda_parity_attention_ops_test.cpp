// CPU <-> CUDA parity of every op of core/ops_attention.h, forward and backward, f64 and
// f32, with padding in the masks, sizes above one thread block and outputs poisoned
// before each GPU run. Skips (visibly) without a device.
#include <gtest/gtest.h>

#include "tests/support/cuda_parity.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/cuda_runtime_info.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/ops_attention.h"
#include "core/rng.h"

namespace lra::core {
namespace {

class CudaAttnOps : public test::CudaParityTest {
 protected:
  CudaAttnOps() : CudaParityTest(101) {}
  // [batch, seq] mask: batch b keeps its first seq - 3 b positions; the last batch row is
  // all padding when `empty_last`.
  Tensor padded_mask(int64_t batch, int64_t seq, bool empty_last) {
    std::vector<double> v(static_cast<std::size_t>(batch * seq), 0.0);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t n = 0; n < seq; ++n)
        if (!(empty_last && b == batch - 1) && n < seq - 3 * b) v[static_cast<std::size_t>(b * seq + n)] = 1;
    return Tensor::from_values(Shape{batch, seq}, v, dtype());
  }
};

TEST_P(CudaAttnOps, FeatureMapsForwardBackward) {
  Tensor x = randn(Shape{3, 7, 131}, 2.0);  // 2751 elements: several blocks
  std::vector<double> xv = x.to_vector();
  for (std::size_t i = 0; i < xv.size(); i += 17) xv[i] = 0.0;  // exact zeros for 1/x
  x = Tensor::from_values(x.shape(), xv, dtype());
  Tensor dy = randn(x.shape());

  Tensor y = elu_plus_one(x);
  poison(x.shape());
  expect_close(elu_plus_one(gpu(x)), y, "elu_plus_one");
  poison(x.shape());
  expect_close(elu_plus_one_backward(gpu(x), gpu(dy)), elu_plus_one_backward(x, dy),
               "elu_plus_one_backward");

  Tensor e = exp(x);
  poison(x.shape());
  Tensor ge = exp(gpu(x));
  expect_close(ge, e, "exp");
  poison(x.shape());
  expect_close(exp_backward(ge, gpu(dy)), exp_backward(e, dy), "exp_backward");

  Tensor r = reciprocal_or_zero(x);
  poison(x.shape());
  Tensor gr = reciprocal_or_zero(gpu(x));
  expect_equal(gr, r, "reciprocal_or_zero");  // one correctly rounded division
  poison(x.shape());
  expect_close(reciprocal_or_zero_backward(gr, gpu(dy)), reciprocal_or_zero_backward(r, dy),
               "reciprocal_or_zero_backward");
}

TEST_P(CudaAttnOps, MaskSeqRank3And4WithNanPadding) {
  for (int rank : {3, 4}) {
    Shape shape = rank == 4 ? Shape{3, 2, 41, 19} : Shape{3, 41, 19};
    Tensor x = randn(shape);
    Tensor mask = padded_mask(3, 41, true);
    // NaN in padded rows must not leak (the op selects, it does not multiply).
    std::vector<double> xv = x.to_vector(), mv = mask.to_vector();
    int64_t heads = rank == 4 ? 2 : 1;
    for (int64_t r = 0; r < 3 * heads * 41; ++r) {
      int64_t b = r / (heads * 41), n = r % 41;
      if (mv[static_cast<std::size_t>(b * 41 + n)] == 0)
        xv[static_cast<std::size_t>(r * 19)] = std::numeric_limits<double>::quiet_NaN();
    }
    x = Tensor::from_values(shape, xv, dtype());
    Tensor y = mask_seq(x, mask);
    poison(shape);
    expect_equal(mask_seq(gpu(x), gpu(mask)), y, "mask_seq");
  }
}

TEST_P(CudaAttnOps, SetRowsIdentity) {
  for (int rank : {3, 4}) {
    Shape shape = rank == 4 ? Shape{3, 2, 23, 23} : Shape{3, 23, 23};
    Tensor a = randn(shape);
    Tensor mask = padded_mask(3, 23, false);
    Tensor y = set_rows_identity(a, mask);
    poison(shape);
    expect_equal(set_rows_identity(gpu(a), gpu(mask)), y, "set_rows_identity");
  }
}

TEST_P(CudaAttnOps, PinvInitForwardBackward) {
  // m = 37 (odd, below one block) and m = 300 (above 256 threads), plus a zero matrix.
  for (int64_t m : {37, 300}) {
    Tensor a = randn(Shape{2, 3, m, m});
    std::vector<double> av = a.to_vector();
    std::fill(av.begin() + 4 * m * m, av.begin() + 5 * m * m, 0.0);  // matrix 4 is zero
    a = Tensor::from_values(a.shape(), av, dtype());
    Tensor z = pinv_init(a);
    poison(a.shape());
    expect_close(pinv_init(gpu(a)), z, "pinv_init");
    Tensor dz = randn(a.shape());
    Tensor da = pinv_init_backward(a, dz);
    poison(a.shape());
    expect_close(pinv_init_backward(gpu(a), gpu(dz)), da, "pinv_init_backward");
  }
  Tensor a3 = randn(Shape{5, 17, 17});  // rank 3
  poison(a3.shape());
  expect_close(pinv_init(gpu(a3)), pinv_init(a3), "pinv_init rank 3");
}

TEST_P(CudaAttnOps, PinvIterateForwardBackward) {
  // m = 5, 33 and 64: the one-block-per-matrix step kernels (m = 64 in f64 is over their
  // shared memory: the composed cuBLAS step); m = 70: the composed step. A is row-stochastic
  // (a softmax, as Nyström's kernel matrix) so the iteration converges; 6 steps and 0.
  // The iteration amplifies rounding: f64 is held to 1e-9 of the largest value, f32 to 2e-4.
  const double tol = dtype() == DType::f64 ? 1e-9 : 2e-4;
  auto close = [&](const Tensor& dev, const Tensor& cpu, const std::string& what) {
    ASSERT_EQ(dev.device(), Device::cuda) << what;
    ASSERT_EQ(dev.shape(), cpu.shape()) << what;
    auto g = dev.to_vector(), c = cpu.to_vector();
    double scale = 1e-30, err = 0;
    for (std::size_t i = 0; i < c.size(); ++i) {
      ASSERT_TRUE(std::isfinite(g[i])) << what << " element " << i;
      scale = std::max(scale, std::abs(c[i]));
      err = std::max(err, std::abs(g[i] - c[i]));
    }
    EXPECT_LE(err / scale, tol) << what;
  };
  for (int64_t m : {5, 33, 64, 70})
    for (int64_t iters : {6, 0}) {
      SCOPED_TRACE(::testing::Message() << "m=" << m << " iters=" << iters);
      const Shape shape{2, 3, m, m};
      Tensor a = softmax(randn(shape, 2.0));
      Tensor z0 = pinv_init(a);
      PinvIteration cpu = pinv_iterate(a, z0, iters);
      for (int i = 0; i < 4 * (iters + 1); ++i) poison(shape);
      Tensor ga = gpu(a);
      PinvIteration dev = pinv_iterate(ga, gpu(z0), iters);
      ASSERT_EQ(dev.steps.size(), cpu.steps.size());
      close(dev.z, cpu.z, "z");
      for (std::size_t j = 0; j < cpu.steps.size(); ++j) {
        const std::string step = "step " + std::to_string(j);
        close(dev.steps[j].p, cpu.steps[j].p, step + " p");
        close(dev.steps[j].u1, cpu.steps[j].u1, step + " u1");
        close(dev.steps[j].u2, cpu.steps[j].u2, step + " u2");
      }
      Tensor dz = randn(shape);
      Tensor da0 = randn(shape, 0.1);  // the backward adds into d_a
      Tensor da = da0.clone();
      Tensor dz0 = pinv_iterate_backward(a, cpu.steps, dz, da);
      Tensor g_da = gpu(da0);
      for (int i = 0; i < 4; ++i) poison(shape);
      Tensor g_dz0 = pinv_iterate_backward(ga, dev.steps, gpu(dz), g_da);
      close(g_dz0, dz0, "d_z0");
      close(g_da, da, "d_a");
    }
}

TEST_P(CudaAttnOps, Crop2dForwardBackward) {
  Tensor x = randn(Shape{67, 300});
  Tensor y = crop2d(x, 45, 211);
  poison(y.shape());
  expect_equal(crop2d(gpu(x), 45, 211), y, "crop2d");
  Tensor dy = randn(Shape{45, 211});
  Tensor dx = randn(Shape{67, 300});
  Tensor gdx = gpu(dx);
  crop2d_backward_add(dx, dy);
  crop2d_backward_add(gdx, gpu(dy));
  expect_equal(gdx, dx, "crop2d_backward_add");
}

TEST_P(CudaAttnOps, DropoutMaskSameBitsAsCpu) {
  for (double p : {0.0, 0.1, 0.5}) {
    Shape shape{7, 3, 101};  // not a multiple of 4 or of the block size
    Tensor cpu_mask = dropout_mask(shape, p, 77, 12345, dtype());
    poison(shape);
    Tensor gpu_mask = dropout_mask(shape, p, 77, 12345, dtype(), Device::cuda);
    expect_equal(gpu_mask, cpu_mask, "dropout_mask");
  }
}

TEST_P(CudaAttnOps, MixedDevicesAreRejected) {
  Tensor x = randn(Shape{2, 5, 3});
  Tensor mask = padded_mask(2, 5, false);
  EXPECT_THROW(mask_seq(gpu(x), mask), Error);
  Tensor dy = randn(x.shape());
  EXPECT_THROW(exp_backward(gpu(x), dy), Error);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaAttnOps, ::testing::Values(DType::f64, DType::f32),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace lra::core
