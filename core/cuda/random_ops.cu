// Launches of the CUDA kernels behind core/ops_random.h (see core/cuda/random_kernels.h for
// which op runs where); the kernels themselves, deterministic, are in random_op_kernels.cuh.
#include <algorithm>
#include <cmath>

#include "core/allocator.h"
#include "core/cuda/check.h"
#include "core/cuda/kernels.h"
#include "core/cuda/random_kernels.h"
#include "core/cuda/random_op_kernels.cuh"
#include "core/cuda/scratch.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "core/rng.h"

namespace lra::core::cuda {
namespace {

constexpr int threads = random_block_threads;       // the block kernels
constexpr int elem_threads = grid_stride_threads;   // the grid-stride kernels, with grid_for
int grid_for(int64_t n) { return grid_stride_blocks(n); }

AnyFloat any_float(const Tensor& t) {
  if (!t.defined()) return {};
  return {t.raw_data(), t.dtype() == DType::f32};
}

LseGeometry checked_lse_geometry(int64_t n, int64_t d, std::size_t elem, int tiles_of_rows) {
  const LseGeometry geo = lse_geometry(n, d, elem, tiles_of_rows);
  if (geo.rows == 0)
    fail("masked_logsumexp (cuda): head_dim {} needs more than 48 KiB of shared memory per block",
         d);
  return geo;
}

}  // namespace

// ================================================================== entry points
void favor_exp_features(const Tensor& u, const Tensor& x, const Tensor& key_mask, bool per_sequence,
                        Tensor& phi) {
  int64_t m = u.dim(-1), d = x.dim(-1), n = u.dim(-2), heads = u.dim(1);
  int64_t rows = u.numel() / std::max<int64_t>(m, 1);
  int64_t seqs = rows / std::max<int64_t>(n, 1);
  if (rows == 0 || m == 0) return;
  LRA_DISPATCH_FLOAT(u.dtype(), T, [&] {
    T inv_sqrt_m = static_cast<T>(1.0 / std::sqrt(static_cast<double>(m)));
    Scratch maxima(per_sequence ? static_cast<std::size_t>(rows + seqs) * sizeof(T) : 0);
    T* row_max = per_sequence ? maxima.as<T>() : nullptr;
    favor_rows_kernel<T><<<static_cast<unsigned>(rows), threads>>>(
        u.data<T>(), x.data<T>(), any_float(key_mask), heads, n, m, d, per_sequence, inv_sqrt_m,
        phi.data<T>(), row_max);
    LRA_CUDA_CHECK_LAUNCH();
    if (!per_sequence) return;
    T* seq_max = row_max + rows;
    favor_seq_max_kernel<T><<<static_cast<unsigned>(seqs), threads>>>(row_max, n, seq_max);
    LRA_CUDA_CHECK_LAUNCH();
    favor_apply_kernel<T><<<grid_for(u.numel()), elem_threads>>>(row_max, seq_max, n, m, u.numel(),
                                                                 inv_sqrt_m, phi.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void relu_features(const Tensor& u, double eps, const Tensor& key_mask, Tensor& phi) {
  int64_t m = u.dim(-1), n = u.dim(-2), heads = u.dim(1);
  LRA_DISPATCH_FLOAT(u.dtype(), T, [&] {
    relu_features_kernel<T>
        <<<grid_for(u.numel()), elem_threads>>>(u.data<T>(), any_float(key_mask), heads, n, m,
                                                u.numel(), static_cast<T>(eps), phi.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void relu_features_backward(const Tensor& u, const Tensor& d_phi, const Tensor& key_mask,
                            Tensor& du) {
  int64_t m = u.dim(-1), n = u.dim(-2), heads = u.dim(1);
  LRA_DISPATCH_FLOAT(u.dtype(), T, [&] {
    relu_features_backward_kernel<T><<<grid_for(u.numel()), elem_threads>>>(
        u.data<T>(), d_phi.data<T>(), any_float(key_mask), heads, n, m, u.numel(), du.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void safe_reciprocal(const Tensor& x, Tensor& y) {
  if (x.numel() == 0) return;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    safe_reciprocal_kernel<T>
        <<<grid_for(x.numel()), elem_threads>>>(x.data<T>(), x.numel(), y.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void sample_rows_uniform(int64_t batch, int64_t heads, int64_t seq, int64_t samples,
                         const Tensor& key_mask, uint64_t seed, IndexSample& out) {
  int64_t total = batch * heads * samples;
  // The CPU kernel's uniforms: element `at` of the stream (seed, offset 0), in f64.
  Tensor u = Tensor::empty(Shape{total}, DType::f64, Device::cuda);
  core::fill_uniform(u, seed, 0);
  Scratch tokens(static_cast<std::size_t>(batch * seq + batch) * sizeof(int));
  int* positions = tokens.as<int>();
  int* real = positions + batch * seq;
  list_real_positions(key_mask, batch, seq, positions, real);
  pick_rows_kernel<<<grid_for(total), elem_threads>>>(u.data<double>(), positions, real, heads, seq,
                                                      samples, total, out.index.data<double>(),
                                                      out.valid.data<double>());
  LRA_CUDA_CHECK_LAUNCH();
  owner_kernel<<<grid_for(total), elem_threads>>>(
      out.index.data<double>(), out.valid.data<double>(), samples, total, out.owner.data<double>());
  LRA_CUDA_CHECK_LAUNCH();
}

void gather_rows(const Tensor& x, const Tensor& index, const Tensor& w, Tensor& out) {
  int64_t seq = x.dim(2), c = x.dim(3), samples = index.dim(2);
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    gather_rows_kernel<T><<<grid_for(out.numel()), elem_threads>>>(
        x.data<T>(), any_float(index), any_float(w), seq, samples, c, out.numel(), out.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void scatter_rows(Tensor& x, const Tensor& index, const Tensor& w, const Tensor& src,
                  ScatterMode mode) {
  int64_t seq = x.dim(2), c = x.dim(3), samples = index.dim(2);
  int64_t seqs = x.dim(0) * x.dim(1);
  if (seqs == 0 || c == 0 || samples == 0) return;
  int code = mode == ScatterMode::zero ? 0 : mode == ScatterMode::assign ? 1 : 2;
  dim3 grid(static_cast<unsigned>(seqs), scatter_column_chunks(c));
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    scatter_rows_kernel<T><<<grid, threads>>>(x.data<T>(), any_float(index), any_float(w),
                                              mode == ScatterMode::zero ? nullptr : src.data<T>(),
                                              code, seq, samples, c);
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void expand_key_mask(const Tensor& key_mask, int64_t heads, Tensor& out) {
  if (out.numel() == 0) return;
  LRA_DISPATCH_FLOAT(out.dtype(), T, [&] {
    expand_key_mask_kernel<T><<<grid_for(out.numel()), elem_threads>>>(
        any_float(key_mask), heads, out.dim(3), out.numel(), out.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

namespace {
int mode_code(SkeinNorm mode) {
  return mode == SkeinNorm::adaptive ? 0 : mode == SkeinNorm::simple ? 1 : 2;
}
}  // namespace

void skein_weights(const Tensor& logits, const Tensor& valid, const Tensor& key_mask,
                   SkeinNorm mode, const Tensor& lse, SkeinWeights& out) {
  int64_t batch = logits.dim(0), heads = logits.dim(1), n = logits.dim(2), s = logits.dim(3);
  int64_t rows = batch * heads * n;
  if (rows == 0) return;
  Scratch real(static_cast<std::size_t>(batch) * sizeof(int));
  list_real_positions(key_mask, batch, n, nullptr, real.as<int>());
  const unsigned blocks = skein_blocks(rows);
  LRA_DISPATCH_FLOAT(logits.dtype(), T, [&] {
    skein_weights_kernel<T><<<blocks, threads>>>(
        logits.data<T>(), any_float(valid), real.as<int>(),
        mode == SkeinNorm::exact ? lse.data<T>() : nullptr, mode_code(mode), heads, n, s, rows,
        out.e.data<T>(), out.g.data<T>(), out.dhat.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void skein_weights_backward(const SkeinWeights& w, const Tensor& valid, const Tensor& key_mask,
                            SkeinNorm mode, const Tensor& d_e, const Tensor& d_dhat,
                            const Tensor& d_g, Tensor& d_logits) {
  int64_t batch = w.e.dim(0), heads = w.e.dim(1), n = w.e.dim(2), s = w.e.dim(3);
  int64_t rows = batch * heads * n;
  if (rows == 0) return;
  Scratch real(static_cast<std::size_t>(batch) * sizeof(int));
  list_real_positions(key_mask, batch, n, nullptr, real.as<int>());
  const unsigned blocks = skein_blocks(rows);
  LRA_DISPATCH_FLOAT(w.e.dtype(), T, [&] {
    skein_weights_backward_kernel<T><<<blocks, threads>>>(
        w.e.data<T>(), w.g.data<T>(), any_float(valid), real.as<int>(), d_e.data<T>(),
        d_dhat.defined() ? d_dhat.data<T>() : nullptr, d_g.defined() ? d_g.data<T>() : nullptr,
        mode_code(mode), heads, n, s, rows, d_logits.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void masked_logsumexp(const Tensor& q, const Tensor& k, const Tensor& key_mask, double scale,
                      Tensor& lse) {
  int64_t heads = q.dim(1), n = q.dim(2), d = q.dim(3);
  int64_t seqs = q.dim(0) * heads;
  if (seqs == 0 || n == 0) return;
  LRA_CHECK(seqs <= 65535, "masked_logsumexp (cuda): {} sequences exceed the grid limit 65535",
            seqs);
  LRA_DISPATCH_FLOAT(q.dtype(), T, [&] {
    const LseGeometry geo = checked_lse_geometry(n, d, sizeof(T), 1);
    dim3 grid(geo.row_blocks, static_cast<unsigned>(seqs));
    lse_kernel<T><<<grid, geo.threads, geo.smem>>>(
        q.data<T>(), k.data<T>(), any_float(key_mask), heads, n, d, static_cast<T>(scale),
        lse.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void masked_logsumexp_backward(const Tensor& q, const Tensor& k, const Tensor& key_mask,
                               double scale, const Tensor& lse, const Tensor& d_lse, Tensor& d_q,
                               Tensor& d_k) {
  int64_t heads = q.dim(1), n = q.dim(2), d = q.dim(3);
  int64_t seqs = q.dim(0) * heads;
  if (seqs == 0 || n == 0 || d == 0) return;
  LRA_CHECK(seqs <= 65535,
            "masked_logsumexp_backward (cuda): {} sequences exceed the grid limit 65535", seqs);
  LRA_DISPATCH_FLOAT(q.dtype(), T, [&] {
    const LseGeometry geo = checked_lse_geometry(n, d, sizeof(T), 2);
    dim3 grid(geo.row_blocks, static_cast<unsigned>(seqs));
    const unsigned block = geo.threads;
    const std::size_t smem = geo.smem;
    lse_grad_kernel<T><<<grid, block, smem>>>(q.data<T>(), k.data<T>(), any_float(key_mask),
                                              lse.data<T>(), d_lse.data<T>(), false, heads, n, d,
                                              static_cast<T>(scale), d_q.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
    lse_grad_kernel<T><<<grid, block, smem>>>(k.data<T>(), q.data<T>(), any_float(key_mask),
                                              lse.data<T>(), d_lse.data<T>(), true, heads, n, d,
                                              static_cast<T>(scale), d_k.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace lra::core::cuda
