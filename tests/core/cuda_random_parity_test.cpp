// CPU <-> CUDA parity of every op of core/ops_random.h, forward and backward, f64 and f32:
// padding in the masks (a partly padded and a fully padded sequence), sizes that are not
// multiples of a warp and larger than one block, device outputs poisoned before each run.
// The draws (sample_rows_uniform, sample_columns, orthogonal_gaussian) must equal the
// CPU's exactly. Skips (visibly) without a device.
#include <gtest/gtest.h>

#include "tests/support/cuda_parity.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/cuda_runtime_info.h"
#include "core/ops_random.h"
#include "core/rng.h"

namespace lra::core {
namespace {

class CudaRandomParity : public test::CudaParityTest {
 protected:
  CudaRandomParity() : CudaParityTest(11) {}
  // [B, N] mask: sequence 0 has `real0` tokens, sequence 1 none, the rest all real.
  Tensor mask(int64_t batch, int64_t n, int64_t real0) {
    std::vector<double> v(static_cast<std::size_t>(batch * n), 1.0);
    for (int64_t j = real0; j < n; ++j) v[static_cast<std::size_t>(j)] = 0;
    if (batch > 1)
      for (int64_t j = 0; j < n; ++j) v[static_cast<std::size_t>(n + j)] = 0;
    return Tensor::from_values(Shape{batch, n}, v, dtype());
  }
};

TEST_P(CudaRandomParity, OrthogonalGaussianIsTheCpuMatrix) {
  for (auto [rows, dim] : {std::pair<int64_t, int64_t>{300, 33}, {7, 16}}) {
    Tensor cpu = orthogonal_gaussian(rows, dim, 99, dtype());
    Tensor dev = orthogonal_gaussian(rows, dim, 99, dtype(), Device::cuda);
    expect_equal(dev, cpu,
                 "orthogonal_gaussian " + std::to_string(rows) + "x" + std::to_string(dim));
  }
}

TEST_P(CudaRandomParity, FavorExpFeatures) {
  // m = 300 features (> one block of threads), N = 37, D = 33, 3 sequences.
  Shape us{3, 2, 37, 300}, xs{3, 2, 37, 33};
  Tensor u = randn(us, 2.0), x = randn(xs, 0.7);
  for (bool masked : {false, true})
    for (bool per_sequence : {false, true}) {
      Tensor m = masked ? mask(3, 37, 20) : Tensor();
      Tensor cpu = favor_exp_features(u, x, m, per_sequence);
      poison(us);
      Tensor dev = favor_exp_features(gpu(u), gpu(x), gpu(m), per_sequence);
      expect_close(dev, cpu,
                   std::string("favor_exp_features") + (masked ? " masked" : "") +
                       (per_sequence ? " per_sequence" : " per_row"));
    }
}

TEST_P(CudaRandomParity, ReluFeaturesAndBackwardAndSafeReciprocal) {
  Shape s{2, 3, 41, 70};
  Tensor u = randn(s), dphi = randn(s), m = mask(2, 41, 9);
  for (const Tensor& mk : {Tensor(), m}) {
    poison(s);
    expect_close(relu_features(gpu(u), 1e-3, gpu(mk)), relu_features(u, 1e-3, mk), "relu_features");
    poison(s);
    expect_close(relu_features_backward(gpu(u), gpu(dphi), gpu(mk)),
                 relu_features_backward(u, dphi, mk), "relu_features_backward");
  }
  std::vector<double> v = u.to_vector();
  for (std::size_t i = 0; i < v.size(); i += 7) v[i] = 0.0;  // exact zeros give 0
  Tensor x = Tensor::from_values(s, v, dtype());
  poison(s);
  expect_close(safe_reciprocal(gpu(x)), safe_reciprocal(x), "safe_reciprocal");
}

TEST_P(CudaRandomParity, SampleRowsUniformIsTheCpuDraw) {
  // 3 x 4 x 100 slots (> one block), a padded and a fully padded sequence.
  for (const Tensor& m : {Tensor(), mask(3, 50, 13)}) {
    IndexSample cpu = sample_rows_uniform(3, 4, 50, 100, m, 1234);
    poison(Shape{3, 4, 100}, DType::f64);
    IndexSample dev = sample_rows_uniform(3, 4, 50, 100, gpu(m), 1234, Device::cuda);
    expect_equal(dev.index, cpu.index, "sample_rows_uniform index");
    expect_equal(dev.valid, cpu.valid, "sample_rows_uniform valid");
    expect_equal(dev.owner, cpu.owner, "sample_rows_uniform owner");
  }
}

TEST_P(CudaRandomParity, SampleColumnsIsTheCpuDraw) {
  Tensor m = mask(3, 60, 17);
  std::vector<double> w = randn(Shape{3, 2, 60}).to_vector();
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = i % 5 == 0 ? 0.0 : w[i] * w[i];
  Tensor weight = Tensor::from_values(Shape{3, 2, 60}, w, dtype());
  for (const Tensor& wt : {Tensor(), weight}) {
    IndexSample cpu = sample_columns(wt, 0.5, 3, 2, 60, 24, m, 77);
    IndexSample dev = sample_columns(gpu(wt), 0.5, 3, 2, 60, 24, gpu(m), 77, Device::cuda);
    expect_equal(dev.index, cpu.index, "sample_columns index");
    expect_equal(dev.valid, cpu.valid, "sample_columns valid");
    expect_equal(dev.owner, cpu.owner, "sample_columns owner");
  }
}

TEST_P(CudaRandomParity, GatherAndScatterRows) {
  // C = 300 columns (two column chunks of the scatter), repeated rows in the index.
  Shape xs{2, 2, 40, 300};
  Tensor x = randn(xs);
  IndexSample idx = sample_rows_uniform(2, 2, 40, 90, mask(2, 40, 31), 5);  // many repeats
  Tensor w = randn(Shape{2, 2, 90});
  std::vector<double> wv = w.to_vector();
  for (std::size_t i = 0; i < wv.size(); i += 4) wv[i] = 0.0;  // skipped slots
  w = Tensor::from_values(Shape{2, 2, 90}, wv, dtype());
  Tensor index = idx.index.to(dtype());  // an index in the op's float dtype also works
  Shape gs{2, 2, 90, 300};
  for (const Tensor& wt : {Tensor(), w}) {
    poison(gs);
    expect_close(gather_rows(gpu(x), gpu(index), gpu(wt)), gather_rows(x, index, wt),
                 "gather_rows");
  }
  Tensor src = randn(gs);
  for (ScatterMode mode : {ScatterMode::add, ScatterMode::assign, ScatterMode::zero})
    for (const Tensor& wt : {Tensor(), w}) {
      Tensor cpu = x.clone(), dev = gpu(x);
      scatter_rows(cpu, index, wt, src, mode);
      scatter_rows(dev, gpu(index), gpu(wt), gpu(src), mode);
      expect_close(dev, cpu, "scatter_rows mode " + std::to_string(static_cast<int>(mode)));
    }
}

TEST_P(CudaRandomParity, ExpandKeyMask) {
  Tensor m = mask(3, 300, 100);
  poison(Shape{3, 5, 1, 300});
  expect_close(expand_key_mask(gpu(m), 3, 5, 300, dtype(), Device::cuda),
               expand_key_mask(m, 3, 5, 300, dtype()), "expand_key_mask");
  expect_close(expand_key_mask({}, 3, 5, 300, dtype(), Device::cuda),
               expand_key_mask({}, 3, 5, 300, dtype()), "expand_key_mask (no mask)");
}

TEST_P(CudaRandomParity, SkeinWeightsAndBackward) {
  // B = 3 (sequence 1 fully padded), H = 2, N = 45, S = 40 slots (some invalid).
  const int64_t b = 3, h = 2, n = 45, s = 40;
  Tensor m = mask(b, n, 30);
  IndexSample cols = sample_columns({}, 0.5, b, h, n, s, m, 3);  // 30 valid of 40 in seq 0
  Tensor q = randn(Shape{b, h, n, 16}, 0.5), k = randn(Shape{b, h, n, 16}, 0.5);
  Tensor logits = randn(Shape{b, h, n, s}, 2.0);
  Tensor lse = masked_logsumexp(q, k, m, 0.25);
  Tensor d_e = randn(Shape{b, h, n, s}), d_dhat = randn(Shape{b, h, n}),
         d_g = randn(Shape{b, h, n});
  for (SkeinNorm mode : {SkeinNorm::adaptive, SkeinNorm::simple, SkeinNorm::exact})
    for (const Tensor& mk : {Tensor(), m}) {
      std::string what =
          "skein mode " + std::to_string(static_cast<int>(mode)) + (mk.defined() ? " masked" : "");
      Tensor l = mode == SkeinNorm::exact ? (mk.defined() ? lse : masked_logsumexp(q, k, {}, 0.25))
                                          : Tensor();
      SkeinWeights cpu = skein_weights(logits, cols.valid, mk, mode, l);
      poison(logits.shape());
      poison(Shape{b, h, n});
      SkeinWeights dev = skein_weights(gpu(logits), gpu(cols.valid), gpu(mk), mode, gpu(l));
      expect_close(dev.e, cpu.e, what + " E");
      expect_close(dev.g, cpu.g, what + " g");
      expect_close(dev.dhat, cpu.dhat, what + " dhat");
      for (bool with_extra : {false, true}) {
        Tensor dd = with_extra ? d_dhat : Tensor(), dg = with_extra ? d_g : Tensor();
        Tensor ref = skein_weights_backward(cpu, cols.valid, mk, mode, d_e, dd, dg);
        poison(logits.shape());
        Tensor got =
            skein_weights_backward(dev, gpu(cols.valid), gpu(mk), mode, gpu(d_e), gpu(dd), gpu(dg));
        expect_close(got, ref, what + (with_extra ? " backward (d_dhat, d_g)" : " backward"));
      }
    }
}

TEST_P(CudaRandomParity, MaskedLogsumexpAndBackward) {
  // N = 77 (three key tiles, the last partial), D = 33 and D = 128 (fewer rows per block).
  for (int64_t d : {33, 128}) {
    Shape s{3, 2, 77, d};
    Tensor q = randn(s, 0.4), k = randn(s, 0.4);
    for (const Tensor& m : {Tensor(), mask(3, 77, 50)}) {
      std::string what = "masked_logsumexp D=" + std::to_string(d) + (m.defined() ? " masked" : "");
      double scale = 1.0 / std::sqrt(static_cast<double>(d));
      Tensor lse = masked_logsumexp(q, k, m, scale);
      poison(Shape{3, 2, 77});
      Tensor glse = masked_logsumexp(gpu(q), gpu(k), gpu(m), scale);
      expect_close(glse, lse, what);
      // The backward adds into existing gradients.
      Tensor d_lse = randn(Shape{3, 2, 77});
      Tensor dq = randn(s), dk = randn(s);
      Tensor gdq = gpu(dq), gdk = gpu(dk);
      masked_logsumexp_backward(q, k, m, scale, lse, d_lse, dq, dk);
      masked_logsumexp_backward(gpu(q), gpu(k), gpu(m), scale, glse, gpu(d_lse), gdq, gdk);
      expect_close(gdq, dq, what + " d_q");
      expect_close(gdk, dk, what + " d_k");
    }
  }
}

TEST_P(CudaRandomParity, MixedDevicesAreRejected) {
  Shape s{1, 1, 4, 3};
  Tensor u = randn(s);
  EXPECT_THROW(favor_exp_features(gpu(u), u, {}, false), Error);
  EXPECT_THROW(sample_rows_uniform(1, 1, 4, 2, mask(1, 4, 4), 1, Device::cuda), Error);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaRandomParity, ::testing::Values(DType::f64, DType::f32),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace lra::core
