// CUDA kernels behind core/ops_random.h (see core/cuda/random_kernels.h for which op runs
// where). Reductions use fixed trees (block trees, warp butterflies) over fixed
// partitions, and scatters run the slots of a sequence in order: results do not depend
// on scheduling.
#include <algorithm>
#include <cmath>

#include "core/allocator.h"
#include "core/cuda/block_reduce.cuh"
#include "core/cuda/check.h"
#include "core/cuda/kernels.h"
#include "core/cuda/random_kernels.h"
#include "core/cuda/scratch.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "core/rng.h"

namespace lra::core::cuda {
namespace {

constexpr int threads = 256;
constexpr unsigned full_warp = 0xffffffffu;

int grid_for(int64_t n) {
  int64_t blocks = (n + threads - 1) / threads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65535LL * 8)));
}

// A float tensor of either dtype read as double (masks, indices, slot weights).
struct AnyFloat {
  const void* ptr = nullptr;
  bool f32 = false;
  __device__ double operator[](int64_t i) const {
    return f32 ? static_cast<double>(static_cast<const float*>(ptr)[i])
               : static_cast<const double*>(ptr)[i];
  }
  __device__ bool defined() const { return ptr != nullptr; }
};
AnyFloat any_float(const Tensor& t) {
  if (!t.defined()) return {};
  return {t.raw_data(), t.dtype() == DType::f32};
}

// ------------------------------------------------------------------ random features
// One block per row r of u ([rows, m]) and x ([rows, d]): exponent u - |x|^2 / 2 and its
// row max. per_sequence = false finishes the row (exp(. - max) / sqrt(m)); otherwise the
// row max goes to row_max for the per-sequence pass.
template <typename T>
__global__ void favor_rows_kernel(const T* u, const T* x, AnyFloat mask, int64_t heads, int64_t n,
                                  int64_t m, int64_t d, bool per_sequence, T inv_sqrt_m, T* phi,
                                  T* row_max) {
  __shared__ T shared[threads];
  int64_t r = blockIdx.x;
  int64_t b = r / n / heads;
  bool real = !mask.defined() || mask[b * n + r % n] != 0.0;
  T* orow = phi + r * m;
  if (!real) {  // uniform per block: every thread leaves together
    for (int64_t i = threadIdx.x; i < m; i += blockDim.x) orow[i] = T(0);
    if (per_sequence && threadIdx.x == 0) row_max[r] = -INFINITY;
    return;
  }
  const T* xr = x + r * d;
  T sq = 0;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) sq += xr[c] * xr[c];
  sq = block_sum(sq, shared);
  const T* ur = u + r * m;
  T mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
    T e = ur[i] - T(0.5) * sq;
    orow[i] = e;
    mx = max(mx, e);
  }
  mx = block_max(mx, shared);
  if (per_sequence) {
    if (threadIdx.x == 0) row_max[r] = mx;
    return;
  }
  for (int64_t i = threadIdx.x; i < m; i += blockDim.x) orow[i] = exp(orow[i] - mx) * inv_sqrt_m;
}

// One block per sequence: seq_max[p] = max over its rows' maxima (-inf when none is real).
template <typename T>
__global__ void favor_seq_max_kernel(const T* row_max, int64_t n, T* seq_max) {
  __shared__ T shared[threads];
  int64_t p = blockIdx.x;
  T mx = -INFINITY;
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) mx = max(mx, row_max[p * n + r]);
  mx = block_max(mx, shared);
  if (threadIdx.x == 0) seq_max[p] = mx;
}

template <typename T>
__global__ void favor_apply_kernel(const T* row_max, const T* seq_max, int64_t n, int64_t m,
                                   int64_t total, T inv_sqrt_m, T* phi) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = i / m;
    // Padded rows (row max -inf) are already 0.
    if (row_max[r] != -INFINITY) phi[i] = exp(phi[i] - seq_max[r / n]) * inv_sqrt_m;
  }
}

template <typename T>
__global__ void relu_features_kernel(const T* u, AnyFloat mask, int64_t heads, int64_t n, int64_t m,
                                     int64_t total, T eps, T* phi) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = i / m;
    bool real = !mask.defined() || mask[(r / n / heads) * n + r % n] != 0.0;
    phi[i] = real ? max(u[i], T(0)) + eps : T(0);
  }
}

template <typename T>
__global__ void relu_features_backward_kernel(const T* u, const T* d_phi, AnyFloat mask,
                                              int64_t heads, int64_t n, int64_t m, int64_t total,
                                              T* du) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = i / m;
    bool real = !mask.defined() || mask[(r / n / heads) * n + r % n] != 0.0;
    du[i] = (real && u[i] > T(0)) ? d_phi[i] : T(0);
  }
}

template <typename T>
__global__ void safe_reciprocal_kernel(const T* x, int64_t total, T* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = x[i] == T(0) ? T(0) : T(1) / x[i];
}

// ------------------------------------------------------------------ sampling
// Slot `at` of [B, H, S]: the pick-th real token, pick = min(floor(u n), n - 1).
__global__ void pick_rows_kernel(const double* u, const int* positions, const int* real,
                                 int64_t heads, int64_t seq, int64_t samples, int64_t total,
                                 double* index, double* valid) {
  for (int64_t at = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; at < total;
       at += int64_t(gridDim.x) * blockDim.x) {
    int64_t b = at / samples / heads;
    int64_t n = real[b];
    if (n == 0) {
      index[at] = 0;
      valid[at] = 0;
      continue;
    }
    auto pick = min(static_cast<int64_t>(u[at] * static_cast<double>(n)), n - 1);
    index[at] = static_cast<double>(positions[b * seq + pick]);
    valid[at] = 1;
  }
}

// owner = 1 for a valid slot that no later valid slot of its sequence repeats.
__global__ void owner_kernel(const double* index, const double* valid, int64_t samples,
                             int64_t total, double* owner) {
  for (int64_t at = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; at < total;
       at += int64_t(gridDim.x) * blockDim.x) {
    double own = valid[at] != 0 ? 1.0 : 0.0;
    int64_t end = (at / samples + 1) * samples;
    for (int64_t t = at + 1; t < end && own != 0; ++t)
      if (valid[t] != 0 && index[t] == index[at]) own = 0;
    owner[at] = own;
  }
}

// ------------------------------------------------------------------ gather / scatter
template <typename T>
__global__ void gather_rows_kernel(const T* x, AnyFloat index, AnyFloat w, int64_t seq,
                                   int64_t samples, int64_t c, int64_t total, T* out) {
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < total;
       o += int64_t(gridDim.x) * blockDim.x) {
    int64_t at = o / c, col = o % c, p = at / samples;
    T weight = w.defined() ? static_cast<T>(w[at]) : T(1);
    auto row = static_cast<int64_t>(index[at]);
    // An unused slot gives 0 even where the named row holds garbage.
    out[o] = weight == T(0) ? T(0) : weight * x[(p * seq + row) * c + col];
  }
}

// grid (sequences, column chunks): each thread owns one column of one sequence and runs
// the slots in order, so repeated rows combine exactly as on the CPU.
template <typename T>
__global__ void scatter_rows_kernel(T* x, AnyFloat index, AnyFloat w, const T* src, int mode,
                                    int64_t seq, int64_t samples, int64_t c) {
  int64_t p = blockIdx.x;
  int64_t col = blockIdx.y * int64_t(blockDim.x) + threadIdx.x;
  if (col >= c) return;
  for (int64_t s = 0; s < samples; ++s) {
    int64_t at = p * samples + s;
    T weight = w.defined() ? static_cast<T>(w[at]) : T(1);
    if (weight == T(0)) continue;
    auto row = static_cast<int64_t>(index[at]);
    T& dst = x[(p * seq + row) * c + col];
    if (mode == 0)
      dst = T(0);
    else if (mode == 1)
      dst = src[at * c + col];
    else
      dst += weight * src[at * c + col];
  }
}

template <typename T>
__global__ void expand_key_mask_kernel(AnyFloat mask, int64_t heads, int64_t seq, int64_t total,
                                       T* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t b = i / seq / heads, j = i % seq;
    out[i] = (!mask.defined() || mask[b * seq + j] != 0.0) ? T(1) : T(0);
  }
}

// ------------------------------------------------------------------ Skeinformer
constexpr int warps_per_block = threads / 32;

// One warp per row r of the logits [rows, S].
template <typename T>
__global__ void skein_weights_kernel(const T* logits, AnyFloat valid, const int* real, const T* lse,
                                     int mode, int64_t heads, int64_t n, int64_t s_count,
                                     int64_t rows, T* e, T* g, T* dhat) {
  int64_t r = blockIdx.x * int64_t(warps_per_block) + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (r >= rows) return;  // uniform per warp
  int64_t p = r / n;
  const T* lr = logits + r * s_count;
  T* er = e + r * s_count;
  int used = 0;
  T mx = -INFINITY, mean = 0;
  for (int64_t s = lane; s < s_count; s += 32)
    if (valid[p * s_count + s] != 0.0) {
      ++used;
      mx = max(mx, lr[s]);
      mean += lr[s];
    }
  used = warp_sum(used);
  mx = warp_max(mx);
  mean = warp_sum(mean);
  if (used == 0 || (lse && !isfinite(lse[r]))) {
    for (int64_t s = lane; s < s_count; s += 32) er[s] = T(0);
    if (lane == 0) {
      g[r] = 0;
      dhat[r] = 0;
    }
    return;
  }
  T shift = lse ? lse[r] : mx;
  T total = 0;
  for (int64_t s = lane; s < s_count; s += 32) {
    T v = valid[p * s_count + s] != 0.0 ? exp(lr[s] - shift) : T(0);
    er[s] = v;
    total += v;
  }
  total = warp_sum(total);
  if (lane != 0) return;
  int64_t rest = real[p / heads] - used;
  if (mode == 0 && rest > 0) {  // adaptive
    T gr = exp(mean / static_cast<T>(used) - mx);
    g[r] = gr;
    dhat[r] = total + static_cast<T>(rest) * gr;
  } else {
    g[r] = 0;
    dhat[r] = mode == 2 ? T(1) : total;
  }
}

template <typename T>
__global__ void skein_weights_backward_kernel(const T* e, const T* g, AnyFloat valid,
                                              const int* real, const T* d_e, const T* d_dhat,
                                              const T* d_g, int mode, int64_t heads, int64_t n,
                                              int64_t s_count, int64_t rows, T* d_logits) {
  int64_t r = blockIdx.x * int64_t(warps_per_block) + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (r >= rows) return;
  int64_t p = r / n;
  int used = 0;
  for (int64_t s = lane; s < s_count; s += 32) used += valid[p * s_count + s] != 0.0;
  used = warp_sum(used);
  T dd = (d_dhat && mode != 2) ? d_dhat[r] : T(0);
  T fill = 0;
  if (mode == 0 && g[r] != T(0) && used > 0) {
    T rest = static_cast<T>(real[p / heads] - used);
    T dg = (d_g ? d_g[r] : T(0)) + rest * dd;
    fill = dg * g[r] / static_cast<T>(used);
  }
  const T* er = e + r * s_count;
  const T* der = d_e + r * s_count;
  T* orow = d_logits + r * s_count;
  for (int64_t s = lane; s < s_count; s += 32)
    orow[s] = valid[p * s_count + s] != 0.0 ? (der[s] + dd) * er[s] + fill : T(0);
}

// ------------------------------------------------------------------ masked log-sum-exp
// Block (32, R): warp ty owns row r0 + ty of its sequence, lane j takes key j0 + j of
// each 32-key tile. Shared memory: the R owned rows and the tile, padded by one column
// against bank conflicts. Only [R, 32] logits exist at a time.
template <typename T>
__device__ void load_tile(const T* src, int64_t first, int64_t count, int64_t n, int64_t d,
                          T* dst) {
  int nthreads = blockDim.x * blockDim.y;
  int tid = threadIdx.y * blockDim.x + threadIdx.x;
  for (int64_t i = tid; i < count * d; i += nthreads) {
    int64_t rr = i / d, c = i % d;
    dst[rr * (d + 1) + c] = first + rr < n ? src[(first + rr) * d + c] : T(0);
  }
}

template <typename T>
__global__ void lse_kernel(const T* q, const T* k, AnyFloat mask, int64_t heads, int64_t n,
                           int64_t d, T scale, T* lse) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* rows_s = reinterpret_cast<T*>(smem_raw);
  T* tile_s = rows_s + blockDim.y * (d + 1);
  int64_t p = blockIdx.y, b = p / heads;
  int64_t r0 = blockIdx.x * int64_t(blockDim.y);
  int lane = threadIdx.x, ty = threadIdx.y;
  load_tile(q + p * n * d, r0, blockDim.y, n, d, rows_s);
  const T* qr = rows_s + ty * (d + 1);
  T m = -INFINITY, total = 0;
  for (int64_t j0 = 0; j0 < n; j0 += 32) {
    __syncthreads();
    load_tile(k + p * n * d, j0, 32, n, d, tile_s);
    __syncthreads();
    int64_t j = j0 + lane;
    T s = -INFINITY;
    if (j < n && (!mask.defined() || mask[b * n + j] != 0.0)) {
      const T* kj = tile_s + lane * (d + 1);
      T dot = 0;
      for (int64_t c = 0; c < d; ++c) dot += qr[c] * kj[c];
      s = scale * dot;
    }
    T m_new = max(m, warp_max(s));
    if (m_new == -INFINITY) continue;  // uniform per warp
    T e = s == -INFINITY ? T(0) : exp(s - m_new);
    total = total * exp(m - m_new) + warp_sum(e);
    m = m_new;
  }
  int64_t r = r0 + ty;
  if (lane == 0 && r < n) lse[p * n + r] = m == -INFINITY ? m : m + log(total);
}

// Gradient of sum_r g_r lse_r: with w_rj = g_r exp(scale q_r.k_j - lse_r) over real keys j
// (0 where lse_r is not finite), d_q[r] += scale sum_j w_rj k_j (owned = q, tile = k) and
// d_k[j] += scale sum_r w_rj q_r (owned = k, tile = q; keys_owned). Warp ty accumulates
// its owned row in shared memory, lane c over the columns.
template <typename T>
__global__ void lse_grad_kernel(const T* owned, const T* tiled, AnyFloat mask, const T* lse,
                                const T* d_lse, bool keys_owned, int64_t heads, int64_t n,
                                int64_t d, T scale, T* out) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* rows_s = reinterpret_cast<T*>(smem_raw);
  T* acc_s = rows_s + blockDim.y * (d + 1);
  T* tile_s = acc_s + blockDim.y * (d + 1);
  int64_t p = blockIdx.y, b = p / heads;
  int64_t r0 = blockIdx.x * int64_t(blockDim.y);
  int lane = threadIdx.x, ty = threadIdx.y;
  load_tile(owned + p * n * d, r0, blockDim.y, n, d, rows_s);
  T* acc = acc_s + ty * (d + 1);
  for (int64_t c = lane; c < d; c += 32) acc[c] = T(0);
  const T* ar = rows_s + ty * (d + 1);
  int64_t a = r0 + ty;
  auto keep = [&](int64_t j) { return !mask.defined() || mask[b * n + j] != 0.0; };
  bool owned_ok = a < n && (!keys_owned || keep(a));
  T owned_l = 0, owned_g = 0;
  if (!keys_owned && a < n) {
    owned_l = lse[p * n + a];
    owned_g = d_lse[p * n + a];
  }
  for (int64_t j0 = 0; j0 < n; j0 += 32) {
    __syncthreads();
    load_tile(tiled + p * n * d, j0, 32, n, d, tile_s);
    __syncthreads();
    int64_t j = j0 + lane;
    T w = 0;
    if (owned_ok && j < n) {
      // (query row, its lse and d_lse) and whether the key is real.
      T l = keys_owned ? lse[p * n + j] : owned_l;
      T gq = keys_owned ? d_lse[p * n + j] : owned_g;
      bool key_real = keys_owned || keep(j);
      if (key_real && isfinite(l)) {
        const T* bj = tile_s + lane * (d + 1);
        T dot = 0;
        for (int64_t c = 0; c < d; ++c) dot += ar[c] * bj[c];
        w = gq * exp(scale * dot - l);
      }
    }
    for (int jj = 0; jj < 32; ++jj) {
      T wj = __shfl_sync(full_warp, w, jj);
      if (wj == T(0)) continue;  // uniform per warp
      const T* bj = tile_s + jj * (d + 1);
      for (int64_t c = lane; c < d; c += 32) acc[c] += wj * bj[c];
    }
  }
  if (a < n)
    for (int64_t c = lane; c < d; c += 32) out[(p * n + a) * d + c] += scale * acc[c];
}

// Rows per block for the tiled log-sum-exp kernels: the largest power of two <= 32 whose
// shared memory (tiles of `tiles_of_rows` x rows plus one 32-row tile) fits in 48 KiB.
int lse_rows_per_block(int64_t d, std::size_t elem, int tiles_of_rows, std::size_t* smem) {
  for (int rows = 32; rows >= 1; rows /= 2) {
    std::size_t bytes = static_cast<std::size_t>((tiles_of_rows * rows + 32) * (d + 1)) * elem;
    if (bytes <= 48 * 1024) {
      *smem = bytes;
      return rows;
    }
  }
  fail("masked_logsumexp (cuda): head_dim {} needs more than 48 KiB of shared memory per block", d);
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
    favor_apply_kernel<T><<<grid_for(u.numel()), threads>>>(row_max, seq_max, n, m, u.numel(),
                                                            inv_sqrt_m, phi.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void relu_features(const Tensor& u, double eps, const Tensor& key_mask, Tensor& phi) {
  int64_t m = u.dim(-1), n = u.dim(-2), heads = u.dim(1);
  LRA_DISPATCH_FLOAT(u.dtype(), T, [&] {
    relu_features_kernel<T><<<grid_for(u.numel()), threads>>>(u.data<T>(), any_float(key_mask),
                                                              heads, n, m, u.numel(),
                                                              static_cast<T>(eps), phi.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void relu_features_backward(const Tensor& u, const Tensor& d_phi, const Tensor& key_mask,
                            Tensor& du) {
  int64_t m = u.dim(-1), n = u.dim(-2), heads = u.dim(1);
  LRA_DISPATCH_FLOAT(u.dtype(), T, [&] {
    relu_features_backward_kernel<T><<<grid_for(u.numel()), threads>>>(
        u.data<T>(), d_phi.data<T>(), any_float(key_mask), heads, n, m, u.numel(), du.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void safe_reciprocal(const Tensor& x, Tensor& y) {
  if (x.numel() == 0) return;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    safe_reciprocal_kernel<T>
        <<<grid_for(x.numel()), threads>>>(x.data<T>(), x.numel(), y.data<T>());
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
  pick_rows_kernel<<<grid_for(total), threads>>>(u.data<double>(), positions, real, heads, seq,
                                                 samples, total, out.index.data<double>(),
                                                 out.valid.data<double>());
  LRA_CUDA_CHECK_LAUNCH();
  owner_kernel<<<grid_for(total), threads>>>(out.index.data<double>(), out.valid.data<double>(),
                                             samples, total, out.owner.data<double>());
  LRA_CUDA_CHECK_LAUNCH();
}

void gather_rows(const Tensor& x, const Tensor& index, const Tensor& w, Tensor& out) {
  int64_t seq = x.dim(2), c = x.dim(3), samples = index.dim(2);
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    gather_rows_kernel<T><<<grid_for(out.numel()), threads>>>(
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
  dim3 grid(static_cast<unsigned>(seqs), static_cast<unsigned>((c + threads - 1) / threads));
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
    expand_key_mask_kernel<T><<<grid_for(out.numel()), threads>>>(
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
  auto blocks = static_cast<unsigned>((rows + warps_per_block - 1) / warps_per_block);
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
  auto blocks = static_cast<unsigned>((rows + warps_per_block - 1) / warps_per_block);
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
    std::size_t smem = 0;
    int rows = lse_rows_per_block(d, sizeof(T), 1, &smem);
    dim3 grid(static_cast<unsigned>((n + rows - 1) / rows), static_cast<unsigned>(seqs));
    lse_kernel<T><<<grid, dim3(32, static_cast<unsigned>(rows)), smem>>>(
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
    std::size_t smem = 0;
    int rows = lse_rows_per_block(d, sizeof(T), 2, &smem);
    dim3 grid(static_cast<unsigned>((n + rows - 1) / rows), static_cast<unsigned>(seqs));
    dim3 block(32, static_cast<unsigned>(rows));
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
