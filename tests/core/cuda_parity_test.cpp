// CPU <-> CUDA parity of every core op, forward and backward, f64 and f32, with padding
// in the masks and outputs poisoned before each run. Skips (visibly) without a device.
#include <gtest/gtest.h>

#include "tests/support/cuda_parity.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/cuda_runtime_info.h"
#include "core/ops.h"
#include "core/precision.h"
#include "core/rng.h"

namespace lra::core {
namespace {

class CudaParity : public test::CudaParityTest {
 protected:
  CudaParity() : CudaParityTest(1) {}
};

TEST_P(CudaParity, Gemm) {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Tensor a = randn(ta ? Shape{3, 33, 17} : Shape{3, 17, 33});
      Tensor b = randn(tb ? Shape{29, 33} : Shape{33, 29});  // broadcast operand
      Tensor c = matmul(a, b, ta, tb, 0.5);
      poison(c.shape());
      expect_close(matmul(gpu(a), gpu(b), ta, tb, 0.5), c, "matmul");
      Tensor dc = randn(c.shape());
      Tensor da = Tensor::empty(a.shape(), dtype()), db = Tensor::empty(b.shape(), dtype());
      matmul_backward(a, ta, b, tb, 0.5, dc, &da, &db);
      Tensor gda = Tensor::empty(a.shape(), dtype(), Device::cuda);
      Tensor gdb = Tensor::empty(b.shape(), dtype(), Device::cuda);
      matmul_backward(gpu(a), ta, gpu(b), tb, 0.5, gpu(dc), &gda, &gdb);
      expect_close(gda, da, "matmul_backward da");
      expect_close(gdb, db, "matmul_backward db (batch-summed)");
    }
}

TEST_P(CudaParity, GemmBatchSummedInChunks) {
  // db of a weight shared by 20 batch entries: 2 MiB (f32) products, so the 32 MiB scratch
  // takes 16 (f32) or 8 (f64) at a time and the sum runs over several chunks; beta = 0 on
  // NaN-poisoned output memory must not read it.
  Tensor a = randn(Shape{20, 64, 1024}), b = randn(Shape{1024, 512});
  Tensor dc = randn(Shape{20, 64, 512});
  Tensor db = Tensor::empty(b.shape(), dtype());
  matmul_backward(a, false, b, false, 1.0, dc, nullptr, &db);
  poison(b.shape());
  Tensor gdb = Tensor::empty(b.shape(), dtype(), Device::cuda);
  matmul_backward(gpu(a), false, gpu(b), false, 1.0, gpu(dc), nullptr, &gdb);
  expect_close(gdb, db, "batch-summed db over chunks");
}

TEST_P(CudaParity, GemmTf32WithinItsRounding) {
  // TF32 applies to f32 only: f64 stays exact. Depth 512 so the rounding shows.
  ScopedMatmulPrecision tf32(MatmulPrecision::tf32);
  Tensor a = randn(Shape{3, 40, 512}), b = randn(Shape{512, 24});
  Tensor c = matmul(a, b);
  poison(c.shape());
  Tensor g = matmul(gpu(a), gpu(b));
  if (dtype() == DType::f64) {
    expect_close(g, c, "f64 under tf32 precision");
    return;
  }
  auto gv = g.to_vector(), cv = c.to_vector();
  double scale = 1e-30, err = 0;
  for (std::size_t i = 0; i < cv.size(); ++i) {
    scale = std::max(scale, std::abs(cv[i]));
    err = std::max(err, std::abs(gv[i] - cv[i]));
  }
  EXPECT_LE(err / scale, 5e-3) << "tf32 matmul";
  EXPECT_GT(err / scale, 1e-6) << "tf32 matmul is as exact as fp32: TF32 not in effect";
}

TEST_P(CudaParity, SoftmaxMaskedAndBackward) {
  Tensor x = randn(Shape{2, 3, 5, 300});
  std::vector<double> mv(600, 1.0);
  for (int i = 250; i < 300; ++i) mv[static_cast<std::size_t>(i)] = 0;  // padding in batch 0
  for (int i = 300; i < 600; ++i) mv[static_cast<std::size_t>(i)] = 0;  // batch 1 fully masked
  Tensor mask = Tensor::from_values(Shape{2, 300}, mv, dtype());
  Tensor y = softmax(x, mask, 0.3);
  poison(y.shape());
  Tensor gy = softmax(gpu(x), gpu(mask), 0.3);
  expect_close(gy, y, "softmax");
  Tensor dy = randn(y.shape());
  expect_close(softmax_backward(gy, gpu(dy), 0.3), softmax_backward(y, dy, 0.3), "softmax_backward");
}

// Rows of at most 256 scores take the fused kernels (core/cuda/matmul_softmax.cu), longer
// rows the GEMM and the row softmax composed (the rule: core/ops.cpp). Each case: key mask
// [B, n] with padding in batch 0 and batch 1 fully masked (rows of exact zeros).
TEST_P(CudaParity, MatmulSoftmaxFusedAndComposed) {
  struct Case {
    int64_t m, n, k;
    bool ta, tb;
    int broadcast;  // 0: none, 1: a, 2: b
    const char* what;
  };
  const Case cases[] = {
      {300, 64, 40, false, true, 0, "Nyström F (N x m), fused"},
      {64, 64, 40, false, true, 0, "Nyström A (m x m), fused"},
      {70, 20, 33, true, false, 0, "n = 20, transposes, fused"},
      {130, 100, 64, false, false, 1, "n = 100, a broadcast, fused"},
      {40, 256, 24, true, true, 2, "n = 256 (the bound), b broadcast, fused"},
      {40, 257, 24, false, true, 0, "n = 257, composed"},
      {64, 1000, 40, false, true, 0, "Nyström B (m x N), composed"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    auto operand = [&](int64_t rows, int64_t cols, bool trans, bool broadcast) {
      Shape inner = trans ? Shape{cols, rows} : Shape{rows, cols};
      return broadcast ? randn(inner) : randn(Shape{2, 3, inner[0], inner[1]});
    };
    Tensor a = operand(c.m, c.k, c.ta, c.broadcast == 1);
    Tensor b = operand(c.k, c.n, c.tb, c.broadcast == 2);
    std::vector<double> mv(static_cast<std::size_t>(2 * c.n), 0.0);
    for (int64_t j = 0; j < c.n - c.n / 4; ++j) mv[static_cast<std::size_t>(j)] = 1;
    Tensor mask = Tensor::from_values(Shape{2, c.n}, mv, dtype());
    Tensor y = matmul_softmax(a, b, c.ta, c.tb, mask, 0.3);
    Tensor y_plain = matmul_softmax(a, b, c.ta, c.tb, Tensor(), 0.3);
    Tensor ga = gpu(a), gb = gpu(b), gmask = gpu(mask);
    poison(y.shape());
    expect_close(matmul_softmax(ga, gb, c.ta, c.tb, gmask, 0.3), y, "masked");
    poison(y.shape());
    expect_close(matmul_softmax(ga, gb, c.ta, c.tb, Tensor(), 0.3), y_plain, "no mask");
  }
}

TEST_P(CudaParity, MatmulSoftmaxFusedIgnoresTf32) {
  // The fused kernels multiply in FP32 whatever the precision setting: a short-row product
  // at depth 512 stays within fp32 rounding of the CPU (a TF32 GEMM would be ~1e-3 off).
  ScopedMatmulPrecision tf32(MatmulPrecision::tf32);
  Tensor a = randn(Shape{3, 200, 512}), b = randn(Shape{3, 64, 512});
  Tensor y = matmul_softmax(a, b, false, true, Tensor(), 0.05);
  Tensor ga = gpu(a), gb = gpu(b);
  poison(y.shape());
  expect_close(matmul_softmax(ga, gb, false, true, Tensor(), 0.05), y, "tf32 setting");
}

// y = softmax(0.4 q kᵀ) (masked as above), dy = g hᵀ. Rows of at most 256 scores take the
// fused kernel, with dk from one tile, from per-tile partials or through dS and cuBLAS
// (cuda::scores::dk_route); longer rows compose.
TEST_P(CudaParity, SoftmaxScoresBackwardFusedAndComposed) {
  struct Case {
    int64_t r, c, d, e;
    const char* what;
  };
  const Case cases[] = {
      {300, 64, 40, 40, "Nyström F: 3 tiles, dk by partials"},
      {64, 64, 64, 64, "one tile: dk direct"},
      {50, 20, 70, 33, "n = 20, d = 70: dk direct"},
      {300, 256, 64, 64, "c = 256: 10 tiles, dk through dS"},
      {200, 100, 16, 24, "c = 100: 4 tiles, dk by partials"},
      {40, 300, 24, 24, "c = 300: composed"},
      {64, 1000, 40, 40, "Nyström B (m x N): composed"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Tensor q = randn(Shape{2, 3, c.r, c.d}), k = randn(Shape{2, 3, c.c, c.d});
    Tensor g = randn(Shape{2, 3, c.r, c.e}), h = randn(Shape{2, 3, c.c, c.e});
    std::vector<double> mv(static_cast<std::size_t>(2 * c.c), 0.0);
    for (int64_t j = 0; j < c.c - c.c / 4; ++j) mv[static_cast<std::size_t>(j)] = 1;
    Tensor mask = Tensor::from_values(Shape{2, c.c}, mv, dtype());
    Tensor y = matmul_softmax(q, k, false, true, mask, 0.4);
    ScoreGrads want = softmax_scores_backward(y, q, k, g, h, 0.4);
    Tensor gy = gpu(y), gq = gpu(q), gk = gpu(k), gg = gpu(g), gh = gpu(h);
    poison(q.shape());  // d_q, d_k (and the scratch of the shape of y)
    poison(k.shape());
    poison(y.shape());
    ScoreGrads got = softmax_scores_backward(gy, gq, gk, gg, gh, 0.4);
    expect_close(got.d_q, want.d_q, "d_q");
    expect_close(got.d_k, want.d_k, "d_k");
  }
}

TEST_P(CudaParity, LayerNorm) {
  Tensor x = randn(Shape{700, 64}), gamma = randn(Shape{64}), beta = randn(Shape{64});
  LayerNormResult r = layer_norm(x, gamma, beta);
  LayerNormResult gr = layer_norm(gpu(x), gpu(gamma), gpu(beta));
  expect_close(gr.y, r.y, "layer_norm");
  Tensor dy = randn(x.shape());
  LayerNormGrads g = layer_norm_backward(x, gamma, r.mean, r.rstd, dy);
  LayerNormGrads gg = layer_norm_backward(gpu(x), gpu(gamma), gr.mean, gr.rstd, gpu(dy));
  expect_close(gg.dx, g.dx, "layer_norm dx");
  expect_close(gg.dgamma, g.dgamma, "layer_norm dgamma");
  expect_close(gg.dbeta, g.dbeta, "layer_norm dbeta");
  Tensor res = randn(x.shape());
  Tensor dx_res = layer_norm_backward(x, gamma, r.mean, r.rstd, dy, res).dx;
  poison(x.shape());
  expect_close(layer_norm_backward(gpu(x), gpu(gamma), gr.mean, gr.rstd, gpu(dy), gpu(res)).dx,
               dx_res, "layer_norm dx + residual");
}

TEST_P(CudaParity, ElementwiseAndReductions) {
  Tensor a = randn(Shape{37, 41}), b = randn(Shape{37, 41}), bias = randn(Shape{41});
  Tensor s = randn(Shape{37});
  expect_close(gelu(gpu(a)), gelu(a), "gelu");
  expect_close(gelu_backward(gpu(a), gpu(b)), gelu_backward(a, b), "gelu_backward");
  expect_close(relu_backward(gpu(a), gpu(b)), relu_backward(a, b), "relu_backward");
  expect_close(mul(gpu(a), gpu(b)), mul(a, b), "mul");
  expect_close(sub(gpu(a), gpu(b)), sub(a, b), "sub");
  expect_close(add_bias(gpu(a), gpu(bias)), add_bias(a, bias), "add_bias");
  expect_close(scale_rows(gpu(a), gpu(s)), scale_rows(a, s), "scale_rows");
  expect_close(scale_rows_backward(gpu(a), gpu(s), gpu(b)).ds, scale_rows_backward(a, s, b).ds,
               "scale_rows ds");
  Tensor acc = a.clone(), gacc = gpu(a);
  add_into(acc, b, 0.25);
  add_into(gacc, gpu(b), 0.25);
  expect_close(gacc, acc, "add_into");
  expect_close(sum_rows(gpu(a)), sum_rows(a), "sum_rows");
  expect_close(mean_rows_backward(gpu(s), a.shape()), mean_rows_backward(s, a.shape()), "mean_rows_backward");
  expect_close(sum_leading(gpu(a)), sum_leading(a), "sum_leading");
  EXPECT_NEAR(sum_all(gpu(a)), sum_all(a), 1e-9);
  Tensor x4 = randn(Shape{2, 3, 4, 5});
  expect_close(transpose12(gpu(x4)), transpose12(x4), "transpose12");
}

TEST_P(CudaParity, SegmentMeansAndConv) {
  Tensor x = randn(Shape{2, 2, 37, 8});
  std::vector<double> mv(74, 1.0);
  for (int i = 37 + 20; i < 74; ++i) mv[static_cast<std::size_t>(i)] = 0;
  Tensor mask = Tensor::from_values(Shape{2, 37}, mv, dtype());
  SegmentMeans r = segment_means(x, 5, mask);
  SegmentMeans gr = segment_means(gpu(x), 5, gpu(mask));
  expect_close(gr.means, r.means, "segment_means");
  expect_close(gr.counts, r.counts, "segment counts");
  Tensor dm = randn(r.means.shape());
  Tensor dx = randn(x.shape()), dx_gpu = gpu(dx);
  segment_means_backward_add(dx, dm, mask);
  segment_means_backward_add(dx_gpu, gpu(dm), gpu(mask));
  expect_close(dx_gpu, dx, "segment_means_backward_add");
  Tensor w = randn(Shape{2, 35});
  expect_close(depthwise_conv_seq(gpu(x), gpu(w)), depthwise_conv_seq(x, w), "conv");
  Tensor dy = randn(x.shape());
  ConvGrads g = depthwise_conv_seq_backward(x, w, dy);
  ConvGrads gg = depthwise_conv_seq_backward(gpu(x), gpu(w), gpu(dy));
  expect_close(gg.dx, g.dx, "conv dx");
  expect_close(gg.dw, g.dw, "conv dw");
}

TEST_P(CudaParity, RngSameStreamAsCpu) {
  Tensor cpu = Tensor::empty(Shape{10001}, dtype());
  Tensor dev = Tensor::empty(Shape{10001}, dtype(), Device::cuda);
  fill_uniform(cpu, 5, 77);
  fill_uniform(dev, 5, 77);
  EXPECT_EQ(dev.to_vector(), cpu.to_vector());  // same bits, same arithmetic
  fill_normal(cpu, 5, 77);
  fill_normal(dev, 5, 77);
  expect_close(dev, cpu, "normal");  // log/cos may differ in the last ulp
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaParity, ::testing::Values(DType::f64, DType::f32),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace lra::core
