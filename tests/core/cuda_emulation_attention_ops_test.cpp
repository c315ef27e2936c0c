// The CUDA kernels of core/ops_attention.h (core/cuda/attention_op_kernels.cuh) and
// core/ops_random.h (core/cuda/random_op_kernels.cuh), their source compiled as host C++
// and run on the CPU under tests/support/cuda_emulation.h (a thread per CUDA thread, real
// barriers and shuffles, shared memory starting as NaN), against the CPU ops of the same
// name. Each kernel is launched with the geometry attention_ops.cu / random_ops.cu compute,
// through the same host helpers (grid_stride_blocks, pinv_init_shared_bytes, skein_blocks,
// scatter_column_chunks, lse_geometry). Outputs start as NaN, so an element no thread
// writes fails the comparison. Selections, copies and Philox draws must match the CPU bit
// for bit; arithmetic within 1e-11 (f64) / 1e-5 (f32) relative.
#include "tests/support/cuda_emulation.h"

#include "core/cuda/attention_op_kernels.cuh"
#include "core/cuda/random_op_kernels.cuh"
#include "core/cuda/segment_kernels.cuh"

#include <gtest/gtest.h>

#include "tests/support/attention_masks.h"
#include "tests/support/emulation_checks.h"

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <utility>
#include <vector>

#include "core/ops_attention.h"
#include "core/ops_random.h"
#include "core/rng.h"

namespace lra::core {
namespace {

using test::rel_error;

Tensor randn(const Shape& shape, uint64_t seed, DType dtype, double scale = 1.0) {
  return test::emulation_randn(shape, seed, dtype, scale);
}

double tol_of(DType dtype) { return dtype == DType::f64 ? 1e-11 : 1e-5; }

// All NaN: an element the kernel leaves unwritten shows in the comparison.
Tensor poisoned(const Shape& shape, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  t.fill(std::nan(""));
  return t;
}

// The same values bit for bit (f32 widens to f64 exactly; the sign of zero counts).
void expect_bits(const Tensor& got, const Tensor& want, const char* what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  const std::vector<double> g = got.to_vector(), w = want.to_vector();
  for (std::size_t i = 0; i < w.size(); ++i) {
    const bool same = std::isnan(w[i]) ? std::isnan(g[i])
                                       : g[i] == w[i] && std::signbit(g[i]) == std::signbit(w[i]);
    if (!same) {
      ADD_FAILURE() << what << ": element " << i << " is " << g[i] << ", the CPU has " << w[i];
      return;
    }
  }
}

// rel_error where the reference holds NaN (rows left alone that held garbage): the result
// must hold NaN there too.
double rel_error_nan(const Tensor& got, const Tensor& want, const char* what) {
  std::vector<double> g = got.to_vector(), w = want.to_vector();
  for (std::size_t i = 0; i < w.size() && i < g.size(); ++i)
    if (std::isnan(w[i])) {
      if (!std::isnan(g[i])) return std::numeric_limits<double>::infinity();
      g[i] = w[i] = 0.0;
    }
  return rel_error(Tensor::from_values(got.shape(), g, DType::f64),
                   Tensor::from_values(want.shape(), w, DType::f64), what);
}

// f32 or f64: f(T{}) with the matching element type.
template <typename F>
void with_type(DType dtype, F&& f) {
  if (dtype == DType::f32)
    f(float{});
  else
    f(double{});
}

const void* mask_ptr(const Tensor& mask) { return mask.defined() ? mask.raw_data() : nullptr; }
bool mask_f32(const Tensor& mask) { return mask.defined() && mask.dtype() == DType::f32; }
cuda::AnyFloat any_float(const Tensor& t) {  // random_ops.cu's any_float
  if (!t.defined()) return {};
  return {t.raw_data(), t.dtype() == DType::f32};
}

// grid_stride_blocks(n) x grid_stride_threads, as every elementwise launch of the .cu files.
void launch_elementwise(int64_t n, const std::function<void()>& kernel) {
  test::emulate_launch(static_cast<unsigned>(cuda::grid_stride_blocks(n)),
                       cuda::grid_stride_threads, 0, kernel);
}

// ================================================================== attention_op_kernels.cuh
TEST(CudaKernelEmulationAttentionOps, FeatureMapsAndTheirBackwardMatchTheCpu) {
  using cpu::AttnUnary;
  for (DType dtype : {DType::f64, DType::f32})
    for (int64_t n : {int64_t{1}, int64_t{1000}}) {  // one partial block; four, the last partial
      SCOPED_TRACE(::testing::Message() << dtype_name(dtype) << " n=" << n);
      std::vector<double> xv = randn(Shape{n}, 31, dtype, 2.0).to_vector();
      for (std::size_t i = 0; i < xv.size(); i += 7) xv[i] = 0.0;  // reciprocal_or_zero's zeros
      const Tensor x = Tensor::from_values(Shape{n}, xv, dtype);
      const Tensor dy = randn(Shape{n}, 32, dtype);
      struct Case {
        AttnUnary op;
        Tensor want_y, want_dx;
      };
      const Tensor ey = exp(x), ry = reciprocal_or_zero(x);
      const Case cases[] = {
          {AttnUnary::elu_plus_one, elu_plus_one(x), elu_plus_one_backward(x, dy)},
          {AttnUnary::exp, ey, exp_backward(ey, dy)},
          {AttnUnary::reciprocal_or_zero, ry, reciprocal_or_zero_backward(ry, dy)},
      };
      for (const Case& c : cases) {
        SCOPED_TRACE(static_cast<int>(c.op));
        // The backward reads x (elu_plus_one) or the forward output (exp, reciprocal).
        const Tensor& xy = c.op == AttnUnary::elu_plus_one ? x : c.want_y;
        Tensor y = poisoned(x.shape(), dtype), dx = poisoned(x.shape(), dtype);
        with_type(dtype, [&](auto tag) {
          using T = decltype(tag);
          const T* xp = x.data<T>();
          const T* pp = xy.data<T>();
          const T* gp = dy.data<T>();
          T* yp = y.data<T>();
          T* dxp = dx.data<T>();
          launch_elementwise(n, [&] { cuda::unary_kernel<T>(c.op, xp, n, yp); });
          launch_elementwise(n, [&] { cuda::unary_backward_kernel<T>(c.op, pp, gp, n, dxp); });
        });
        EXPECT_LE(rel_error(y, c.want_y, "y"), tol_of(dtype)) << "y";
        EXPECT_LE(rel_error(dx, c.want_dx, "dx"), tol_of(dtype)) << "dx";
      }
    }
}

// mask_seq and set_rows_identity: attention_ops.cu's mask_rows launch.
Tensor emulate_mask_rows(const Tensor& x, const Tensor& mask, bool identity_rows) {
  const int64_t heads = x.rank() == 3 ? 1 : x.dim(1), seq = x.dim(-2), width = x.dim(-1);
  Tensor y = poisoned(x.shape(), x.dtype());
  with_type(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    const int64_t total = x.numel();
    launch_elementwise(total, [&] {
      cuda::mask_rows_kernel<T>(xp, mask.raw_data(), mask_f32(mask), heads, seq, width, total,
                                identity_rows, yp);
    });
  });
  return y;
}

TEST(CudaKernelEmulationAttentionOps, MaskSeqAndSetRowsIdentityAreTheCpuRows) {
  for (DType dtype : {DType::f64, DType::f32})
    for (DType mask_dtype : {DType::f32, DType::f64}) {
      SCOPED_TRACE(::testing::Message()
                   << dtype_name(dtype) << ", mask " << dtype_name(mask_dtype));
      // Tail padding and a batch without any real token; 2 x 3 x 10 x 7 = 420 elements.
      const Tensor mask = test::tail_padded_mask(2, 10, mask_dtype);
      const Tensor x4 = randn(Shape{2, 3, 10, 7}, 41, dtype);
      expect_bits(emulate_mask_rows(x4, mask, false), mask_seq(x4, mask), "mask_seq [B, H, N, C]");
      const Tensor x3 = randn(Shape{2, 10, 13}, 42, dtype);
      expect_bits(emulate_mask_rows(x3, mask, false), mask_seq(x3, mask), "mask_seq [B, N, C]");
      const Tensor a = randn(Shape{2, 2, 10, 10}, 43, dtype);
      expect_bits(emulate_mask_rows(a, mask, true), set_rows_identity(a, mask),
                  "set_rows_identity [B, H, m, m]");
      const Tensor a3 = randn(Shape{2, 10, 10}, 44, dtype);
      expect_bits(emulate_mask_rows(a3, mask, true), set_rows_identity(a3, mask),
                  "set_rows_identity [B, m, m]");
    }
}

TEST(CudaKernelEmulationAttentionOps, PinvInitAndBackwardMatchTheCpu) {
  for (DType dtype : {DType::f64, DType::f32})
    for (int64_t m : {1, 5, 33, 260}) {  // 260: more rows and columns than threads
      SCOPED_TRACE(::testing::Message() << dtype_name(dtype) << " m=" << m);
      const int64_t mats = m > 64 ? 1 : 3;
      std::vector<double> av = randn(Shape{mats, m, m}, 51, dtype).to_vector();
      if (mats > 1)  // matrix 1 all zeros: no norm, Z0 = 0 and dA = 0 (the early exit)
        for (int64_t e = 0; e < m * m; ++e) av[static_cast<std::size_t>(m * m + e)] = 0.0;
      const Tensor a = Tensor::from_values(Shape{mats, m, m}, av, dtype);
      const Tensor dz0 = randn(a.shape(), 52, dtype);
      const Tensor want_z = pinv_init(a), want_da = pinv_init_backward(a, dz0);
      Tensor z = poisoned(a.shape(), dtype), da = poisoned(a.shape(), dtype);
      with_type(dtype, [&](auto tag) {
        using T = decltype(tag);
        const std::size_t shared = cuda::pinv_init_shared_bytes(m, sizeof(T));
        const T* ap = a.data<T>();
        const T* gp = dz0.data<T>();
        T* zp = z.data<T>();
        T* dap = da.data<T>();
        test::emulate_launch(static_cast<unsigned>(mats), cuda::pinv_init_threads, shared,
                             [&] { cuda::pinv_init_kernel<T>(ap, m, zp); });
        test::emulate_launch(static_cast<unsigned>(mats), cuda::pinv_init_threads, shared,
                             [&] { cuda::pinv_init_backward_kernel<T>(ap, gp, m, dap); });
      });
      EXPECT_LE(rel_error(z, want_z, "z0"), tol_of(dtype)) << "z0";
      EXPECT_LE(rel_error(da, want_da, "da"), tol_of(dtype)) << "da";
    }
}

TEST(CudaKernelEmulationAttentionOps, Crop2dAndItsBackwardAreTheCpuBlock) {
  for (DType dtype : {DType::f64, DType::f32}) {
    SCOPED_TRACE(dtype_name(dtype));
    const Tensor x = randn(Shape{23, 300}, 61, dtype);
    const Tensor want_y = crop2d(x, 20, 270);  // 5400 elements: 22 blocks, the last partial
    Tensor y = poisoned(want_y.shape(), dtype);
    const Tensor dy = randn(want_y.shape(), 62, dtype), dx0 = randn(x.shape(), 63, dtype);
    Tensor want_dx = dx0.clone(), dx = dx0.clone();
    crop2d_backward_add(want_dx, dy);
    with_type(dtype, [&](auto tag) {
      using T = decltype(tag);
      const T* xp = x.data<T>();
      const T* gp = dy.data<T>();
      T* yp = y.data<T>();
      T* dxp = dx.data<T>();
      const int64_t total = y.numel();
      launch_elementwise(total, [&] { cuda::crop_kernel<T>(xp, x.dim(1), y.dim(1), total, yp); });
      launch_elementwise(
          total, [&] { cuda::crop_backward_kernel<T>(dxp, dx.dim(1), gp, dy.dim(1), total); });
    });
    expect_bits(y, want_y, "crop2d");
    expect_bits(dx, want_dx, "crop2d_backward_add");  // one addition per element: exact
  }
}

// attn_dropout_mask: the Philox uniforms (cuda::fill_uniform draws the CPU's stream, see
// core/rng.cpp and ops.cu's uniform_kernel), then threshold_kernel.
TEST(CudaKernelEmulationAttentionOps, DropoutMaskIsTheCpuMaskBitForBit) {
  for (DType dtype : {DType::f64, DType::f32})
    for (double p : {0.0, 0.1, 0.5}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dtype) << " p=" << p);
      const Shape shape{3, 7, 45};  // 945 elements
      const uint64_t seed = 17, offset = (uint64_t{1} << 33) + 5;
      const Tensor want = dropout_mask(shape, p, seed, offset, dtype);
      Tensor y = Tensor::empty(shape, dtype);
      fill_uniform(y, seed, offset, 0.0, 1.0);
      with_type(dtype, [&](auto tag) {
        using T = decltype(tag);
        T* yp = y.data<T>();
        const int64_t n = y.numel();
        launch_elementwise(n, [&] {
          cuda::threshold_kernel<T>(yp, n, static_cast<T>(p), static_cast<T>(1.0 / (1.0 - p)));
        });
      });
      expect_bits(y, want, "dropout mask");
    }
}

// ================================================================== random_op_kernels.cuh
// random_ops.cu's favor_exp_features: one block per row, then (per_sequence) the maxima
// per sequence and the finishing pass.
Tensor emulate_favor(const Tensor& u, const Tensor& x, const Tensor& mask, bool per_sequence) {
  const int64_t m = u.dim(-1), d = x.dim(-1), n = u.dim(-2), heads = u.dim(1);
  const int64_t rows = u.numel() / m, seqs = rows / n;
  Tensor phi = poisoned(u.shape(), u.dtype());
  with_type(u.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T inv_sqrt_m = static_cast<T>(1.0 / std::sqrt(static_cast<double>(m)));
    std::vector<T> maxima(static_cast<std::size_t>(rows + seqs), std::nan(""));
    T* row_max = per_sequence ? maxima.data() : nullptr;
    const T* up = u.data<T>();
    const T* xp = x.data<T>();
    T* pp = phi.data<T>();
    const cuda::AnyFloat am = any_float(mask);
    test::emulate_launch(static_cast<unsigned>(rows), cuda::random_block_threads, 0, [&] {
      cuda::favor_rows_kernel<T>(up, xp, am, heads, n, m, d, per_sequence, inv_sqrt_m, pp, row_max);
    });
    if (!per_sequence) return;
    T* seq_max = row_max + rows;
    test::emulate_launch(static_cast<unsigned>(seqs), cuda::random_block_threads, 0,
                         [&] { cuda::favor_seq_max_kernel<T>(row_max, n, seq_max); });
    const int64_t total = u.numel();
    launch_elementwise(
        total, [&] { cuda::favor_apply_kernel<T>(row_max, seq_max, n, m, total, inv_sqrt_m, pp); });
  });
  return phi;
}

TEST(CudaKernelEmulationRandomOps, FavorExpFeaturesMatchTheCpu) {
  // (m, masked): 300 features are more than a block's threads.
  const std::pair<int64_t, bool> cases[] = {{7, true}, {300, true}, {7, false}};
  for (DType dtype : {DType::f64, DType::f32})
    for (auto [m, masked] : cases)
      for (bool per_sequence : {false, true}) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dtype) << " m=" << m << " masked=" << masked
                                          << " per_sequence=" << per_sequence);
        const Tensor u = randn(Shape{2, 1, 5, m}, 71, dtype);
        const Tensor x = randn(Shape{2, 1, 5, 3}, 72, dtype, 0.7);
        const Tensor mask = masked ? test::tail_padded_mask(2, 5, dtype) : Tensor();
        EXPECT_LE(rel_error(emulate_favor(u, x, mask, per_sequence),
                            favor_exp_features(u, x, mask, per_sequence), "phi"),
                  tol_of(dtype));
      }
}

TEST(CudaKernelEmulationRandomOps, ReluFeaturesSafeReciprocalAndExpandedMaskMatchTheCpu) {
  for (DType dtype : {DType::f64, DType::f32}) {
    SCOPED_TRACE(dtype_name(dtype));
    const Shape shape{2, 3, 10, 11};  // 660 elements: three blocks, the last partial
    const Tensor u = randn(shape, 81, dtype), d_phi = randn(shape, 82, dtype);
    const Tensor mask =
        test::tail_padded_mask(2, 10, dtype == DType::f32 ? DType::f64 : DType::f32);
    std::vector<double> rv = randn(shape, 83, dtype).to_vector();
    for (std::size_t i = 0; i < rv.size(); i += 5) rv[i] = 0.0;  // safe_reciprocal's zeros
    const Tensor r = Tensor::from_values(shape, rv, dtype);
    const double eps = 1e-3;
    for (const Tensor& key_mask : {mask, Tensor()}) {
      Tensor phi = poisoned(shape, dtype), du = poisoned(shape, dtype);
      Tensor rec = poisoned(shape, dtype), ex = poisoned(Shape{2, 3, 1, 10}, dtype);
      with_type(dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t total = u.numel(), m = u.dim(-1), n = u.dim(-2), heads = u.dim(1);
        const cuda::AnyFloat am = any_float(key_mask);
        const T* up = u.data<T>();
        const T* gp = d_phi.data<T>();
        const T* rp = r.data<T>();
        T* phip = phi.data<T>();
        T* dup = du.data<T>();
        T* recp = rec.data<T>();
        T* exp_ = ex.data<T>();
        launch_elementwise(total, [&] {
          cuda::relu_features_kernel<T>(up, am, heads, n, m, total, static_cast<T>(eps), phip);
        });
        launch_elementwise(total, [&] {
          cuda::relu_features_backward_kernel<T>(up, gp, am, heads, n, m, total, dup);
        });
        launch_elementwise(total, [&] { cuda::safe_reciprocal_kernel<T>(rp, total, recp); });
        const int64_t ex_total = ex.numel();
        launch_elementwise(ex_total, [&] {
          cuda::expand_key_mask_kernel<T>(am, heads, ex.dim(3), ex_total, exp_);
        });
      });
      expect_bits(phi, relu_features(u, eps, key_mask), "relu_features");
      expect_bits(du, relu_features_backward(u, d_phi, key_mask), "relu_features_backward");
      expect_bits(rec, safe_reciprocal(r), "safe_reciprocal");
      expect_bits(ex, expand_key_mask(key_mask, 2, 3, 10, dtype), "expand_key_mask");
    }
  }
}

// random_ops.cu's sample_rows_uniform: the real positions (segment_kernels.cuh, as
// list_real_positions launches it), the Philox uniforms of the CPU's stream, then the pick
// and owner kernels.
IndexSample emulate_sample_rows(int64_t batch, int64_t heads, int64_t seq, int64_t samples,
                                const Tensor& mask, uint64_t seed) {
  const int64_t total = batch * heads * samples;
  Tensor u = Tensor::empty(Shape{total}, DType::f64);
  fill_uniform(u, seed, 0);
  std::vector<int> tokens(static_cast<std::size_t>(batch * seq + batch), -1);
  int* positions = tokens.data();
  int* real = positions + batch * seq;
  const void* mp = mask_ptr(mask);
  const bool m32 = mask_f32(mask);
  test::emulate_launch(static_cast<unsigned>(batch), cuda::real_positions_threads, 0,
                       [&] { cuda::real_positions_kernel<>(mp, m32, seq, positions, real); });
  const Shape s{batch, heads, samples};
  IndexSample out{poisoned(s, DType::f64), poisoned(s, DType::f64), poisoned(s, DType::f64)};
  const double* up = u.data<double>();
  double* index = out.index.data<double>();
  double* valid = out.valid.data<double>();
  double* owner = out.owner.data<double>();
  launch_elementwise(total, [&] {
    cuda::pick_rows_kernel<double>(up, positions, real, heads, seq, samples, total, index, valid);
  });
  launch_elementwise(total,
                     [&] { cuda::owner_kernel<double>(index, valid, samples, total, owner); });
  return out;
}

TEST(CudaKernelEmulationRandomOps, SampleRowsUniformIsTheCpuSampleBitForBit) {
  for (DType mask_dtype : {DType::f32, DType::f64})
    for (bool masked : {true, false}) {
      SCOPED_TRACE(::testing::Message() << "mask " << (masked ? dtype_name(mask_dtype) : "none"));
      // 40 slots over at most 11 tokens: repeated rows, so owners matter.
      const Tensor mask = masked ? test::tail_padded_mask(3, 11, mask_dtype) : Tensor();
      const IndexSample want = sample_rows_uniform(3, 2, 11, 40, mask, 1234);
      const IndexSample got = emulate_sample_rows(3, 2, 11, 40, mask, 1234);
      expect_bits(got.index, want.index, "index");
      expect_bits(got.valid, want.valid, "valid");
      expect_bits(got.owner, want.owner, "owner");
    }
}

Tensor emulate_gather(const Tensor& x, const Tensor& index, const Tensor& w) {
  const int64_t seq = x.dim(2), c = x.dim(3), samples = index.dim(2);
  Tensor out = poisoned(Shape{x.dim(0), x.dim(1), samples, c}, x.dtype());
  with_type(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    T* op = out.data<T>();
    const int64_t total = out.numel();
    const cuda::AnyFloat ai = any_float(index), aw = any_float(w);
    launch_elementwise(
        total, [&] { cuda::gather_rows_kernel<T>(xp, ai, aw, seq, samples, c, total, op); });
  });
  return out;
}

// random_ops.cu's scatter_rows: grid (sequences, column chunks).
void emulate_scatter(Tensor& x, const Tensor& index, const Tensor& w, const Tensor& src,
                     ScatterMode mode) {
  const int64_t seq = x.dim(2), c = x.dim(3), samples = index.dim(2), seqs = x.dim(0) * x.dim(1);
  const int code = mode == ScatterMode::zero ? 0 : mode == ScatterMode::assign ? 1 : 2;
  with_type(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* xp = x.data<T>();
    const T* sp = mode == ScatterMode::zero ? nullptr : src.data<T>();
    const cuda::AnyFloat ai = any_float(index), aw = any_float(w);
    test::emulate_launch_2d(
        static_cast<unsigned>(seqs), cuda::scatter_column_chunks(c), cuda::random_block_threads, 0,
        [&] { cuda::scatter_rows_kernel<T>(xp, ai, aw, sp, code, seq, samples, c); });
  });
}

TEST(CudaKernelEmulationRandomOps, GatherAndScatterRowsMatchTheCpu) {
  for (DType dtype : {DType::f64, DType::f32}) {
    // c = 260: two column chunks, the second partial. Batch 1 has no real token: its slots
    // are all unused and name row 0, which holds NaN (an unused slot must give 0).
    const int64_t batch = 2, heads = 1, seq = 7, samples = 9, c = 260;
    const Tensor mask = test::tail_padded_mask(batch, seq, DType::f32);
    const IndexSample smp = sample_rows_uniform(batch, heads, seq, samples, mask, 99);
    std::vector<double> xv = randn(Shape{batch, heads, seq, c}, 91, dtype).to_vector();
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t k = 0; k < c; ++k)
        xv[static_cast<std::size_t>(((heads + h) * seq) * c + k)] = std::nan("");
    const Tensor x = Tensor::from_values(Shape{batch, heads, seq, c}, xv, dtype);
    const Tensor src = randn(Shape{batch, heads, samples, c}, 92, dtype);
    const Tensor index32 = smp.index.to(DType::f32), owner32 = smp.owner.to(DType::f32);
    struct Weights {
      const char* name;
      Tensor index, w;
    };
    const Weights cases[] = {{"w = valid", smp.index, smp.valid},
                             {"w = owner (f32 index and weights)", index32, owner32},
                             {"w undefined", smp.index, Tensor()}};
    for (const Weights& wc : cases) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dtype) << " " << wc.name);
      // Gathering the NaN rows of batch 1 with w undefined gives NaN on both sides.
      expect_bits(emulate_gather(x, wc.index, wc.w), gather_rows(x, wc.index, wc.w), "gather");
      for (ScatterMode mode : {ScatterMode::zero, ScatterMode::assign, ScatterMode::add}) {
        SCOPED_TRACE(static_cast<int>(mode));
        Tensor want = x.clone(), got = x.clone();
        scatter_rows(want, wc.index, wc.w, src, mode);
        emulate_scatter(got, wc.index, wc.w, src, mode);
        if (mode == ScatterMode::add)  // a fused multiply-add on the GPU: within rounding
          EXPECT_LE(rel_error_nan(got, want, "scatter add"), tol_of(dtype));
        else
          expect_bits(got, want, "scatter");
      }
    }
  }
}

// Skeinformer: random_ops.cu's skein_weights and its backward, one warp per row.
SkeinWeights emulate_skein(const Tensor& logits, const Tensor& valid, const std::vector<int>& real,
                           SkeinNorm mode, const Tensor& lse) {
  const int64_t heads = logits.dim(1), n = logits.dim(2), s = logits.dim(3);
  const int64_t rows = logits.dim(0) * heads * n;
  const Shape rs{logits.dim(0), heads, n};
  SkeinWeights out{poisoned(logits.shape(), logits.dtype()), poisoned(rs, logits.dtype()),
                   poisoned(rs, logits.dtype())};
  const int code = mode == SkeinNorm::adaptive ? 0 : mode == SkeinNorm::simple ? 1 : 2;
  with_type(logits.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* lp = logits.data<T>();
    const T* lsep = mode == SkeinNorm::exact ? lse.data<T>() : nullptr;
    T* ep = out.e.data<T>();
    T* gp = out.g.data<T>();
    T* dp = out.dhat.data<T>();
    const int* rp = real.data();
    const cuda::AnyFloat av = any_float(valid);
    test::emulate_launch(cuda::skein_blocks(rows), cuda::random_block_threads, 0, [&] {
      cuda::skein_weights_kernel<T>(lp, av, rp, lsep, code, heads, n, s, rows, ep, gp, dp);
    });
  });
  return out;
}

Tensor emulate_skein_backward(const SkeinWeights& w, const Tensor& valid,
                              const std::vector<int>& real, SkeinNorm mode, const Tensor& d_e,
                              const Tensor& d_dhat, const Tensor& d_g) {
  const int64_t heads = w.e.dim(1), n = w.e.dim(2), s = w.e.dim(3);
  const int64_t rows = w.e.dim(0) * heads * n;
  Tensor d_logits = poisoned(w.e.shape(), w.e.dtype());
  const int code = mode == SkeinNorm::adaptive ? 0 : mode == SkeinNorm::simple ? 1 : 2;
  with_type(w.e.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* ep = w.e.data<T>();
    const T* gp = w.g.data<T>();
    const T* dep = d_e.data<T>();
    const T* ddp = d_dhat.defined() ? d_dhat.data<T>() : nullptr;
    const T* dgp = d_g.defined() ? d_g.data<T>() : nullptr;
    T* op = d_logits.data<T>();
    const int* rp = real.data();
    const cuda::AnyFloat av = any_float(valid);
    test::emulate_launch(cuda::skein_blocks(rows), cuda::random_block_threads, 0, [&] {
      cuda::skein_weights_backward_kernel<T>(ep, gp, av, rp, dep, ddp, dgp, code, heads, n, s, rows,
                                             op);
    });
  });
  return d_logits;
}

TEST(CudaKernelEmulationRandomOps, SkeinWeightsAndTheirBackwardMatchTheCpu) {
  for (DType dtype : {DType::f64, DType::f32})
    // (N, S): rows of a block past the end (20 and 52 rows, 8 per block), S > 32 lanes.
    for (auto [n, s] : {std::pair<int64_t, int64_t>{5, 3}, {13, 40}}) {
      const int64_t batch = 2, heads = 2;
      // Batch 0: the last third padded, every third slot unused (fewer valid slots than
      // real keys: the adaptive fill-in). Batch 1: no real key; head 0 without any valid
      // slot (E = g = dhat = 0), head 1 with all slots valid.
      const Tensor mask = test::tail_padded_mask(batch, n, dtype);
      std::vector<double> vv(static_cast<std::size_t>(batch * heads * s));
      for (int64_t p = 0; p < batch * heads; ++p)
        for (int64_t j = 0; j < s; ++j)
          vv[static_cast<std::size_t>(p * s + j)] = p < heads ? (j % 3 != 1) : (p == heads + 1);
      const Tensor valid = Tensor::from_values(Shape{batch, heads, s}, vv, DType::f64);
      // Real keys per batch, as list_real_positions counts them.
      std::vector<int> real(static_cast<std::size_t>(batch), 0);
      const std::vector<double> mv = mask.to_vector();
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t j = 0; j < n; ++j)
          real[static_cast<std::size_t>(b)] += mv[static_cast<std::size_t>(b * n + j)] != 0.0;
      const Tensor logits = randn(Shape{batch, heads, n, s}, 101, dtype, 2.0);
      const Tensor q = randn(Shape{batch, heads, n, 4}, 102, dtype);
      const Tensor lse = masked_logsumexp(q, q, mask, 0.5);  // -inf for batch 1
      const Tensor d_e = randn(logits.shape(), 103, dtype);
      const Tensor d_dhat = randn(Shape{batch, heads, n}, 104, dtype);
      const Tensor d_g = randn(Shape{batch, heads, n}, 105, dtype);
      for (SkeinNorm mode : {SkeinNorm::adaptive, SkeinNorm::simple, SkeinNorm::exact}) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dtype) << " N=" << n << " S=" << s
                                          << " mode " << static_cast<int>(mode));
        const SkeinWeights want = skein_weights(logits, valid, mask, mode, lse);
        const SkeinWeights got = emulate_skein(logits, valid, real, mode, lse);
        EXPECT_LE(rel_error(got.e, want.e, "E"), tol_of(dtype)) << "E";
        EXPECT_LE(rel_error(got.g, want.g, "g"), tol_of(dtype)) << "g";
        EXPECT_LE(rel_error(got.dhat, want.dhat, "dhat"), tol_of(dtype)) << "dhat";
        for (bool grads : {true, false}) {  // d_dhat and dg given, or undefined
          const Tensor dd = grads ? d_dhat : Tensor(), dg = grads ? d_g : Tensor();
          EXPECT_LE(rel_error(emulate_skein_backward(want, valid, real, mode, d_e, dd, dg),
                              skein_weights_backward(want, valid, mask, mode, d_e, dd, dg), "dL"),
                    tol_of(dtype))
              << "dL, d_dhat and dg " << (grads ? "given" : "undefined");
        }
      }
    }
}

// random_ops.cu's masked_logsumexp and its backward: lse_geometry's blocks over (row
// blocks, sequences); the backward adds d_q (queries owned) and d_k (keys owned).
// lse_in: the forward's result the backward reads.
void emulate_lse(const Tensor& q, const Tensor& k, const Tensor& mask, double scale, Tensor& lse,
                 const Tensor& lse_in, const Tensor& d_lse, Tensor& d_q, Tensor& d_k) {
  const int64_t heads = q.dim(1), n = q.dim(2), d = q.dim(3), seqs = q.dim(0) * heads;
  with_type(q.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const cuda::AnyFloat am = any_float(mask);
    const T* qp = q.data<T>();
    const T* kp = k.data<T>();
    T* lp = lse.data<T>();
    const T sc = static_cast<T>(scale);
    const cuda::LseGeometry fwd = cuda::lse_geometry(n, d, sizeof(T), 1);
    ASSERT_GT(fwd.rows, 0);
    test::emulate_launch_2d(fwd.row_blocks, static_cast<unsigned>(seqs), fwd.threads, fwd.smem,
                            [&] { cuda::lse_kernel<T>(qp, kp, am, heads, n, d, sc, lp); });
    const cuda::LseGeometry bwd = cuda::lse_geometry(n, d, sizeof(T), 2);
    ASSERT_GT(bwd.rows, 0);
    const T* lip = lse_in.data<T>();
    const T* gp = d_lse.data<T>();
    T* dqp = d_q.data<T>();
    T* dkp = d_k.data<T>();
    test::emulate_launch_2d(
        bwd.row_blocks, static_cast<unsigned>(seqs), bwd.threads, bwd.smem,
        [&] { cuda::lse_grad_kernel<T>(qp, kp, am, lip, gp, false, heads, n, d, sc, dqp); });
    test::emulate_launch_2d(
        bwd.row_blocks, static_cast<unsigned>(seqs), bwd.threads, bwd.smem,
        [&] { cuda::lse_grad_kernel<T>(kp, qp, am, lip, gp, true, heads, n, d, sc, dkp); });
  });
}

void check_lse(int64_t batch, int64_t heads, int64_t n, int64_t d, bool masked, DType dtype) {
  const int rows_fwd = cuda::lse_geometry(n, d, dtype_size(dtype), 1).rows;
  const int rows_bwd = cuda::lse_geometry(n, d, dtype_size(dtype), 2).rows;
  SCOPED_TRACE(::testing::Message()
               << dtype_name(dtype) << " B=" << batch << " H=" << heads << " N=" << n << " D=" << d
               << " masked=" << masked << " rows per block " << rows_fwd << " / " << rows_bwd);
  const Shape shape{batch, heads, n, d};
  const Tensor q = randn(shape, 111, dtype), k = randn(shape, 112, dtype);
  const Tensor mask = masked ? test::tail_padded_mask(batch, n, dtype) : Tensor();
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const Tensor want_lse = masked_logsumexp(q, k, mask, scale);
  const Tensor d_lse = randn(want_lse.shape(), 113, dtype);
  const Tensor dq0 = randn(shape, 114, dtype), dk0 = randn(shape, 115, dtype);
  // The backward from the CPU's lse on both sides, added into the same starting gradients.
  Tensor want_dq = dq0.clone(), want_dk = dk0.clone();
  masked_logsumexp_backward(q, k, mask, scale, want_lse, d_lse, want_dq, want_dk);
  Tensor lse = poisoned(want_lse.shape(), dtype);
  Tensor dq = dq0.clone(), dk = dk0.clone();
  emulate_lse(q, k, mask, scale, lse, want_lse, d_lse, dq, dk);
  EXPECT_LE(rel_error(lse, want_lse, "lse"), tol_of(dtype)) << "lse";
  EXPECT_LE(rel_error(dq, want_dq, "d_q"), tol_of(dtype)) << "d_q";
  EXPECT_LE(rel_error(dk, want_dk, "d_k"), tol_of(dtype)) << "d_k";
}

TEST(CudaKernelEmulationRandomOps, MaskedLogsumexpAndItsBackwardMatchTheCpu) {
  // Blocks of up to 1024 threads, each shuffle two barriers of them: few, small sequences.
  check_lse(2, 1, 33, 8, true, DType::f64);    // two key tiles and row blocks, the second with
  check_lse(2, 1, 33, 8, true, DType::f32);    // one row; batch 1 without any real key
  check_lse(1, 1, 33, 8, false, DType::f32);   // unmasked
  // Fewer rows per block (16, and 8 backward); real keys in both tiles, so the running
  // maximum moves between tiles in f64 too.
  check_lse(1, 1, 40, 100, false, DType::f64);
}

}  // namespace
}  // namespace lra::core
