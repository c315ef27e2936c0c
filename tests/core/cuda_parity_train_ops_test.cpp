// CPU <-> CUDA parity of every op of core/ops_train.h, f64 and f32: random inputs drawn
// fresh, padding (and fully padded rows) in the masks, sizes above one thread block,
// outputs poisoned before each GPU run. Copies, selections and the position / CLS
// scatter-adds match the CPU bit for bit (same order of adds); embedding_backward and
// the reductions must give the same bits on every run.
// Skips (visibly) without a device.
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
#include "core/ops_train.h"
#include "core/rng.h"

namespace lra::core {
namespace {

class CudaTrainOps : public test::CudaParityTest {
 protected:
  CudaTrainOps() : CudaParityTest(202) {}
  std::vector<int32_t> random_ints(int64_t n, int32_t below) {
    Rng rng(seed_++);
    std::vector<int32_t> out(static_cast<std::size_t>(n));
    for (auto& v : out) v = std::min(below - 1, static_cast<int32_t>(rng.uniform_scalar() * below));
    return out;
  }
  // batch b keeps its first seq - 5 b positions; the last row is all padding.
  Tensor padded_mask(int64_t batch, int64_t seq) {
    std::vector<double> v(static_cast<std::size_t>(batch * seq), 0.0);
    for (int64_t b = 0; b + 1 < batch; ++b)
      for (int64_t n = 0; n < seq - 5 * b; ++n) v[static_cast<std::size_t>(b * seq + n)] = 1;
    return Tensor::from_values(Shape{batch, seq}, v, dtype());
  }
};

TEST_P(CudaTrainOps, AddBiasInplace) {
  Tensor x = randn(Shape{5, 61, 37}), bias = randn(Shape{37});
  Tensor gx = gpu(x);
  add_bias_inplace(x, bias);
  add_bias_inplace(gx, gpu(bias));
  expect_equal(gx, x, "add_bias_inplace");
}

TEST_P(CudaTrainOps, EmbeddingGatherAndDeterministicScatter) {
  // 1500 rows over a vocabulary of 13: every id repeats ~115 times; some ids unused.
  std::vector<int32_t> ids = random_ints(1500, 11);
  Tensor table = randn(Shape{13, 70});
  Tensor y = embedding(table, ids);
  poison(y.shape());
  expect_equal(embedding(gpu(table), ids), y, "embedding");

  Tensor dy = randn(Shape{1500, 70});
  Tensor dtable = randn(Shape{13, 70});  // accumulates into existing values
  Tensor g1 = gpu(dtable), g2 = gpu(dtable);
  embedding_backward(ids, dy, dtable);
  embedding_backward(ids, gpu(dy), g1);
  embedding_backward(ids, gpu(dy), g2);
  expect_close(g1, dtable, "embedding_backward");
  expect_equal(g1, g2.to(Device::cpu), "embedding_backward run to run (no atomics)");
}

TEST_P(CudaTrainOps, AddPositionsForwardBackward) {
  Tensor x = randn(Shape{6, 45, 33}), pos = randn(Shape{50, 33});
  Tensor gx = gpu(x);
  add_positions(x, pos);
  add_positions(gx, gpu(pos));
  expect_equal(gx, x, "add_positions");
  Tensor dy = randn(Shape{6, 45, 33}), dpos = randn(Shape{50, 33});
  Tensor gdpos = gpu(dpos);
  add_positions_backward(dy, dpos);
  add_positions_backward(gpu(dy), gdpos);
  expect_equal(gdpos, dpos, "add_positions_backward (rows past N untouched)");
}

TEST_P(CudaTrainOps, PrependRowForwardBackward) {
  Tensor x = randn(Shape{4, 70, 29}), cls = randn(Shape{29});
  Tensor y = prepend_row(x, cls);
  poison(y.shape());
  expect_equal(prepend_row(gpu(x), gpu(cls)), y, "prepend_row");
  Tensor dy = randn(y.shape());
  PrependRowGrads g = prepend_row_backward(dy);
  poison(g.dx.shape());
  poison(g.dcls.shape());
  PrependRowGrads gg = prepend_row_backward(gpu(dy));
  expect_equal(gg.dx, g.dx, "prepend_row_backward dx");
  expect_equal(gg.dcls, g.dcls, "prepend_row_backward dcls");
}

TEST_P(CudaTrainOps, MaskedMeanWithPaddingAndWithoutMask) {
  Tensor x = randn(Shape{5, 300, 45});  // two column tiles of 32, the second partial
  Tensor mask = padded_mask(5, 300);  // the last row pools to 0
  for (bool use_mask : {true, false}) {
    Tensor m = use_mask ? mask : Tensor();
    Tensor gm = use_mask ? gpu(mask) : Tensor();
    Tensor y = masked_mean(x, m);
    poison(y.shape());
    expect_close(masked_mean(gpu(x), gm), y, "masked_mean");
    Tensor dy = randn(y.shape());
    Tensor dx = masked_mean_backward(dy, m, x.shape());
    poison(x.shape());
    expect_close(masked_mean_backward(gpu(dy), gm, x.shape()), dx, "masked_mean_backward");
  }
}

TEST_P(CudaTrainOps, PairFeaturesOnSlices) {
  Tensor both = randn(Shape{2 * 67, 23});
  Tensor u = both.slice(0, 67), v = both.slice(67, 134);
  Tensor gboth = gpu(both);
  Tensor gu = gboth.slice(0, 67), gv = gboth.slice(67, 134);
  Tensor y = pair_features(u, v);
  poison(y.shape());
  expect_equal(pair_features(gu, gv), y, "pair_features");
  Tensor dy = randn(y.shape());
  PairFeatureGrads g = pair_features_backward(u, v, dy);
  poison(u.shape());
  poison(u.shape());
  PairFeatureGrads gg = pair_features_backward(gu, gv, gpu(dy));
  expect_close(gg.du, g.du, "pair_features_backward du");
  expect_close(gg.dv, g.dv, "pair_features_backward dv");
}

TEST_P(CudaTrainOps, DropoutKeepMaskSameBits) {
  for (double p : {0.0, 0.1, 0.45}) {
    Shape shape{3, 7, 103};  // 2163: not a multiple of 4
    Tensor c = dropout_keep_mask(shape, p, 0x1234567890ull, (uint64_t(9) << 20) | 5, dtype());
    poison(shape);
    Tensor g = dropout_keep_mask(shape, p, 0x1234567890ull, (uint64_t(9) << 20) | 5, dtype(),
                                 Device::cuda);
    expect_equal(g, c, "dropout_keep_mask");
  }
}

// The encoder block's fused epilogues: the same bits as the CPU where they only add,
// select and multiply (products rounded before the add on both), the GELU to tolerance.
TEST_P(CudaTrainOps, BiasDropoutAddSameBitsInPlaceAndNot) {
  const Shape shape{5, 61, 37};  // 11285: not a multiple of 4
  Tensor y = randn(shape), bias = randn(Shape{37}), residual = randn(shape);
  for (double p : {0.0, 0.1}) {
    const DropoutDraw drop{p, 0x1234567890ull, (uint64_t(9) << 20) | 5};
    Tensor want = Tensor::empty(shape, dtype());
    bias_dropout_add(y, bias, drop, residual, want);
    poison(shape);
    Tensor out = Tensor::empty(shape, dtype(), Device::cuda);
    bias_dropout_add(gpu(y), gpu(bias), drop, gpu(residual), out);
    expect_equal(out, want, "bias_dropout_add");
    Tensor over_y = gpu(y);
    bias_dropout_add(over_y, gpu(bias), drop, gpu(residual), over_y);
    expect_equal(over_y, want, "bias_dropout_add over y");
    Tensor alone = Tensor::empty(shape, dtype());
    bias_dropout_add(y, Tensor(), drop, Tensor(), alone);
    poison(shape);
    Tensor galone = Tensor::empty(shape, dtype(), Device::cuda);
    bias_dropout_add(gpu(y), Tensor(), drop, Tensor(), galone);
    expect_equal(galone, alone, "dropout alone");
  }
}

TEST_P(CudaTrainOps, BiasGeluForwardBackward) {
  const Shape shape{7, 300, 33};
  Tensor h = randn(shape, 2.0), bias = randn(Shape{33}), dg = randn(shape);
  const Tensor g = bias_gelu(h, bias), dz = bias_gelu_backward(h, bias, dg);
  poison(shape);
  expect_close(bias_gelu(gpu(h), gpu(bias)), g, "bias_gelu");
  poison(shape);
  expect_close(bias_gelu_backward(gpu(h), gpu(bias), gpu(dg)), dz, "bias_gelu_backward");
}

TEST_P(CudaTrainOps, BiasHeadsFirstSameBits) {
  Tensor y = randn(Shape{3 * 129, 2 * 32}), bias = randn(Shape{64});
  const Tensor want = bias_heads_first(y, bias, 3, 2);
  poison(want.shape());
  expect_equal(bias_heads_first(gpu(y), gpu(bias), 3, 2), want, "bias_heads_first");
}

TEST_P(CudaTrainOps, CrossEntropyForwardBackward) {
  Tensor logits = randn(Shape{300, 10}, 3.0);
  std::vector<int32_t> labels = random_ints(300, 10);
  CrossEntropyResult r = cross_entropy(logits, labels);
  poison(logits.shape());
  CrossEntropyResult gr = cross_entropy(gpu(logits), labels);
  EXPECT_NEAR(gr.loss, r.loss, tol() * std::max(1.0, std::abs(r.loss)));
  EXPECT_EQ(gr.correct, r.correct);
  expect_close(gr.probs, r.probs, "cross_entropy probs");
  Tensor d = cross_entropy_backward(r.probs, labels);
  poison(logits.shape());
  expect_close(cross_entropy_backward(gr.probs, labels), d, "cross_entropy_backward");
  // The sync-free form: the sums stay on the device.
  poison(logits.shape());
  poison(Shape{2}, DType::f64);
  CrossEntropyStats st = cross_entropy_stats(gpu(logits), labels);
  ASSERT_EQ(st.stats.device(), Device::cuda);
  std::vector<double> v = st.stats.to_vector();
  EXPECT_NEAR(v[0], r.loss * 300, tol() * 300 * std::max(1.0, std::abs(r.loss)));
  EXPECT_EQ(v[1], static_cast<double>(r.correct));
  expect_close(st.probs, r.probs, "cross_entropy_stats probs");
}

TEST_P(CudaTrainOps, ToDeviceAsyncCopiesViews) {
  Tensor x = randn(Shape{40, 33});
  Tensor view = x.slice(7, 30);  // an offset view
  poison(view.shape());
  Tensor g = to_device_async(view, Device::cuda);
  expect_equal(g, view, "to_device_async");
  Tensor back = to_device_async(g, Device::cpu);
  EXPECT_EQ(back.device(), Device::cpu);
  EXPECT_EQ(back.to_vector(), view.to_vector());
}

TEST_P(CudaTrainOps, SumSquaresAndGlobalNormDeterministic) {
  Tensor a = randn(Shape{70000}), b = randn(Shape{3, 5}), c = randn(Shape{257, 129});
  Tensor ga = gpu(a), gb = gpu(b), gc = gpu(c);
  double s = sum_squares(a), gs1 = sum_squares(ga), gs2 = sum_squares(ga);
  EXPECT_NEAR(gs1, s, 1e-12 * s);  // both accumulate in double
  EXPECT_EQ(std::memcmp(&gs1, &gs2, sizeof(double)), 0) << "sum_squares run to run";
  for (double clip : {0.0, 1.0, 1e9}) {
    std::vector<double> want = global_norm_scale({&a, &b, &c}, clip).to_vector();
    Tensor got = global_norm_scale({&ga, &gb, &gc}, clip);
    ASSERT_EQ(got.device(), Device::cuda);
    std::vector<double> g = got.to_vector();
    double norm = std::sqrt(s + sum_squares(b) + sum_squares(c));
    EXPECT_NEAR(want[0], norm, 1e-12 * norm);
    EXPECT_NEAR(g[0], norm, 1e-12 * norm);
    EXPECT_NEAR(g[1], clip > 0 && norm > clip ? clip / (norm + 1e-6) : 1.0, 1e-12);
  }
}

// The optimizer step over a list of tensors (core/cuda/multi_tensor_kernels.cuh): 52
// tensors of odd sizes (one empty, one of several sum-of-squares chunks), more than one
// launch holds, weight decay on two of three; host and device clip scales.
TEST_P(CudaTrainOps, MultiTensorAdamWAndNormMatchCpu) {
  std::vector<int64_t> sizes;
  const int64_t cycle[] = {1, 7, 1000, 4099};
  for (int i = 0; i < 52; ++i) sizes.push_back(cycle[i % 4]);
  sizes[3] = 0;
  sizes[40] = 70001;
  const std::size_t n = sizes.size();
  std::vector<Tensor> cw, cm, cv, gw, gm, gv;
  std::vector<bool> decay;
  for (std::size_t i = 0; i < n; ++i) {
    Tensor w = randn(Shape{sizes[i]});
    cw.push_back(w);
    gw.push_back(gpu(w));
    cm.push_back(Tensor::zeros(w.shape(), dtype()));
    cv.push_back(Tensor::zeros(w.shape(), dtype()));
    gm.push_back(gpu(cm.back()));
    gv.push_back(gpu(cv.back()));
    decay.push_back(i % 3 != 1);
  }
  auto ptrs = [](std::vector<Tensor>& ts) {
    std::vector<Tensor*> out;
    for (Tensor& t : ts) out.push_back(&t);
    return out;
  };
  auto const_ptrs = [](std::vector<Tensor>& ts) {
    std::vector<const Tensor*> out;
    for (Tensor& t : ts) out.push_back(&t);
    return out;
  };
  for (int64_t step = 1; step <= 4; ++step) {
    std::vector<Tensor> grads, ggrads;
    for (std::size_t i = 0; i < n; ++i) {
      grads.push_back(randn(Shape{sizes[i]}, step % 2 ? 0.5 : 2.0));
      ggrads.push_back(gpu(grads.back()));
    }
    AdamWParams p;
    p.lr = 1e-2;
    p.weight_decay = 0.1;
    p.step = step;
    if (step % 2 == 1) {
      p.grad_scale = 0.7;
      adamw_update_all(ptrs(cw), const_ptrs(grads), ptrs(cm), ptrs(cv), decay, p);
      adamw_update_all(ptrs(gw), const_ptrs(ggrads), ptrs(gm), ptrs(gv), decay, p);
    } else {  // the scale from the device (clipping without a host sync)
      const double clip = 0.5 * global_norm_scale(const_ptrs(grads), 0.0).to_vector()[0];
      Tensor cpu_scale = global_norm_scale(const_ptrs(grads), clip);
      poison(Shape{2}, DType::f64);
      Tensor gpu_scale = global_norm_scale(const_ptrs(ggrads), clip);
      ASSERT_EQ(gpu_scale.device(), Device::cuda);
      std::vector<double> want = cpu_scale.to_vector(), got = gpu_scale.to_vector();
      EXPECT_NEAR(got[0], want[0], 1e-12 * want[0]) << "norm";
      EXPECT_NEAR(got[1], want[1], 1e-12) << "scale";
      EXPECT_LT(got[1], 0.6) << "clipped";
      // Same bits run to run, and the order of the per-tensor sums: each tensor's sum of
      // squares (its chunks in order), the tensors in list order.
      std::vector<double> again = global_norm_scale(const_ptrs(ggrads), clip).to_vector();
      EXPECT_EQ(std::memcmp(again.data(), got.data(), 2 * sizeof(double)), 0) << "run to run";
      double total = 0;
      for (const Tensor& g : ggrads) total += sum_squares(g);
      EXPECT_EQ(got[0], std::sqrt(total)) << "per-tensor order";
      p.grad_scale = 123.0;  // ignored
      adamw_update_all(ptrs(cw), const_ptrs(grads), ptrs(cm), ptrs(cv), decay, p, cpu_scale);
      adamw_update_all(ptrs(gw), const_ptrs(ggrads), ptrs(gm), ptrs(gv), decay, p, gpu_scale);
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (sizes[i] == 0) continue;
    SCOPED_TRACE(::testing::Message() << "tensor " << i << " of " << sizes[i]);
    expect_close(gw[i], cw[i], "adamw w");
    expect_close(gm[i], cm[i], "adamw m");
    expect_close(gv[i], cv[i], "adamw v");
  }
  // A list on two devices is rejected, naming the entry.
  Tensor extra = randn(Shape{3});
  std::vector<const Tensor*> mixed = const_ptrs(gw);
  mixed.push_back(&extra);
  EXPECT_THROW(global_norm_scale(mixed, 1.0), Error);
}

TEST_P(CudaTrainOps, MixedDevicesAreRejected) {
  Tensor x = randn(Shape{2, 4, 3}), pos = randn(Shape{4, 3});
  Tensor gx = gpu(x);
  EXPECT_THROW(add_positions(gx, pos), Error);
  EXPECT_THROW(masked_mean(gx, padded_mask(2, 4)), Error);
}

// Runs everywhere: the CPU form of cross_entropy_stats agrees with cross_entropy.
TEST(TrainOpsStats, CpuStatsMatchCrossEntropy) {
  Tensor logits = Tensor::empty(Shape{37, 5}, DType::f64);
  fill_normal(logits, 3, 0, 0.0, 2.0);
  std::vector<int32_t> labels;
  for (int i = 0; i < 37; ++i) labels.push_back((i * 7) % 5);
  CrossEntropyResult r = cross_entropy(logits, labels);
  CrossEntropyStats st = cross_entropy_stats(logits, labels);
  std::vector<double> v = st.stats.to_vector();
  // Independent reference: the loss of each row from its log-sum-exp.
  double total = 0;
  int hits = 0;
  for (int64_t i = 0; i < 37; ++i) {
    double mx = -1e300, z = 0;
    int64_t arg = 0;
    for (int64_t j = 0; j < 5; ++j) {
      double x = logits.at({i, j});
      if (x > mx) {
        mx = x;
        arg = j;
      }
    }
    for (int64_t j = 0; j < 5; ++j) z += std::exp(logits.at({i, j}) - mx);
    total += mx + std::log(z) - logits.at({i, labels[static_cast<std::size_t>(i)]});
    hits += arg == labels[static_cast<std::size_t>(i)];
  }
  EXPECT_NEAR(v[0], total, 1e-12 * total);
  EXPECT_NEAR(r.loss * 37, total, 1e-12 * total);
  EXPECT_EQ(v[1], hits);
  EXPECT_EQ(st.probs.to_vector(), r.probs.to_vector());
  EXPECT_EQ(to_device_async(logits, Device::cpu).to_vector(), logits.to_vector());
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaTrainOps, ::testing::Values(DType::f64, DType::f32),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace lra::core
