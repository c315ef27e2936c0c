#pragma once
// The CUDA kernels behind core/ops_random.h (random features, row sampling, row gathers and
// scatters, the Skeinformer row normalisation, the tiled masked log-sum-exp), device code
// only: the launches are in random_ops.cu, and the CPU emulation test
// (tests/core/cuda_emulation_attention_ops_test.cpp) runs these same kernels against the
// CPU ops. Reductions use fixed trees (block trees, warp butterflies) over fixed
// partitions, and scatters run the slots of a sequence in order: results do not depend on
// scheduling. Every thread of a block reaches every barrier and shuffle of its block (a
// warp whose row is past the end computes on nothing and writes nothing), which the
// emulation, where a shuffle is a block-wide exchange, relies on.
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "core/cuda/block_reduce.cuh"
#include "core/cuda/dynamic_shared.cuh"
#include "core/cuda/grid_stride.cuh"

namespace lra::core::cuda {

constexpr int random_block_threads = 256;  // every kernel here: a power of two
constexpr int random_warps_per_block = random_block_threads / 32;
constexpr unsigned random_full_warp = 0xffffffffu;

// A float tensor of either dtype read as double (masks, indices, slot weights); a null
// pointer for an undefined tensor.
struct AnyFloat {
  const void* ptr = nullptr;
  bool f32 = false;
  __device__ double operator[](int64_t i) const {
    return f32 ? static_cast<double>(static_cast<const float*>(ptr)[i])
               : static_cast<const double*>(ptr)[i];
  }
  __device__ bool defined() const { return ptr != nullptr; }
};

// ------------------------------------------------------------------ random features
// One block per row r of u ([rows, m]) and x ([rows, d]): exponent u - |x|^2 / 2 and its
// row max. per_sequence = false finishes the row (exp(. - max) / sqrt(m)); otherwise the
// row max goes to row_max for the per-sequence pass.
template <typename T>
__global__ void favor_rows_kernel(const T* u, const T* x, AnyFloat mask, int64_t heads, int64_t n,
                                  int64_t m, int64_t d, bool per_sequence, T inv_sqrt_m, T* phi,
                                  T* row_max) {
  __shared__ T shared[random_block_threads];
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
    mx = fmax(mx, e);
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
  __shared__ T shared[random_block_threads];
  int64_t p = blockIdx.x;
  T mx = -INFINITY;
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) mx = fmax(mx, row_max[p * n + r]);
  mx = block_max(mx, shared);
  if (threadIdx.x == 0) seq_max[p] = mx;
}

template <typename T>
__global__ void favor_apply_kernel(const T* row_max, const T* seq_max, int64_t n, int64_t m,
                                   int64_t total, T inv_sqrt_m, T* phi) {
  LRA_GRID_STRIDE(i, total) {
    int64_t r = i / m;
    // Padded rows (row max -inf) are already 0.
    if (row_max[r] != -INFINITY) phi[i] = exp(phi[i] - seq_max[r / n]) * inv_sqrt_m;
  }
}

template <typename T>
__global__ void relu_features_kernel(const T* u, AnyFloat mask, int64_t heads, int64_t n, int64_t m,
                                     int64_t total, T eps, T* phi) {
  LRA_GRID_STRIDE(i, total) {
    int64_t r = i / m;
    bool real = !mask.defined() || mask[(r / n / heads) * n + r % n] != 0.0;
    phi[i] = real ? fmax(u[i], T(0)) + eps : T(0);
  }
}

template <typename T>
__global__ void relu_features_backward_kernel(const T* u, const T* d_phi, AnyFloat mask,
                                              int64_t heads, int64_t n, int64_t m, int64_t total,
                                              T* du) {
  LRA_GRID_STRIDE(i, total) {
    int64_t r = i / m;
    bool real = !mask.defined() || mask[(r / n / heads) * n + r % n] != 0.0;
    du[i] = (real && u[i] > T(0)) ? d_phi[i] : T(0);
  }
}

template <typename T>
__global__ void safe_reciprocal_kernel(const T* x, int64_t total, T* y) {
  LRA_GRID_STRIDE(i, total) y[i] = x[i] == T(0) ? T(0) : T(1) / x[i];
}

// ------------------------------------------------------------------ sampling
// Slot `at` of [B, H, S]: the pick-th real token, pick = min(floor(u n), n - 1). F is the
// sample's float type (f64); a template so that the header defines the kernel inline.
template <typename F>
__global__ void pick_rows_kernel(const F* u, const int* positions, const int* real, int64_t heads,
                                 int64_t seq, int64_t samples, int64_t total, F* index, F* valid) {
  LRA_GRID_STRIDE(at, total) {
    int64_t b = at / samples / heads;
    int64_t n = real[b];
    if (n == 0) {
      index[at] = 0;
      valid[at] = 0;
      continue;
    }
    int64_t pick = static_cast<int64_t>(u[at] * static_cast<F>(n));
    if (pick > n - 1) pick = n - 1;
    index[at] = static_cast<F>(positions[b * seq + pick]);
    valid[at] = 1;
  }
}

// owner = 1 for a valid slot that no later valid slot of its sequence repeats.
template <typename F>
__global__ void owner_kernel(const F* index, const F* valid, int64_t samples, int64_t total,
                             F* owner) {
  LRA_GRID_STRIDE(at, total) {
    F own = valid[at] != 0 ? F(1) : F(0);
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
  LRA_GRID_STRIDE(o, total) {
    int64_t at = o / c, col = o % c, p = at / samples;
    T weight = w.defined() ? static_cast<T>(w[at]) : T(1);
    auto row = static_cast<int64_t>(index[at]);
    // An unused slot gives 0 even where the named row holds garbage.
    out[o] = weight == T(0) ? T(0) : weight * x[(p * seq + row) * c + col];
  }
}

// grid (sequences, scatter_column_chunks), blocks of random_block_threads: each thread
// owns one column of one sequence and runs the slots in order, so repeated rows combine
// exactly as on the CPU.
inline unsigned scatter_column_chunks(int64_t c) {
  return static_cast<unsigned>((c + random_block_threads - 1) / random_block_threads);
}
template <typename T>
__global__ void scatter_rows_kernel(T* x, AnyFloat index, AnyFloat w, const T* src, int mode,
                                    int64_t seq, int64_t samples, int64_t c) {
  int64_t p = blockIdx.x;
  int64_t col = blockIdx.y * int64_t(blockDim.x) + threadIdx.x;
  if (col >= c) return;  // no barrier in this kernel
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
  LRA_GRID_STRIDE(i, total) {
    int64_t b = i / seq / heads, j = i % seq;
    out[i] = (!mask.defined() || mask[b * seq + j] != 0.0) ? T(1) : T(0);
  }
}

// ------------------------------------------------------------------ Skeinformer
// One warp per row r of the logits [rows, S]: blocks of random_warps_per_block rows.
inline unsigned skein_blocks(int64_t rows) {
  return static_cast<unsigned>((rows + random_warps_per_block - 1) / random_warps_per_block);
}

// mode: 0 adaptive, 1 simple, 2 exact (lse given). A warp whose row is past the end, or has
// no valid slot, or (exact) a non-finite lse, runs the same shuffles on nothing.
template <typename T>
__global__ void skein_weights_kernel(const T* logits, AnyFloat valid, const int* real, const T* lse,
                                     int mode, int64_t heads, int64_t n, int64_t s_count,
                                     int64_t rows, T* e, T* g, T* dhat) {
  int64_t r = blockIdx.x * int64_t(random_warps_per_block) + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  const bool inside = r < rows;
  const int64_t cols = inside ? s_count : 0;  // rows past the end: no slots
  int64_t p = r / n;
  const T* lr = logits + r * s_count;
  T* er = e + r * s_count;
  int used = 0;
  T mx = -INFINITY, mean = 0;
  for (int64_t s = lane; s < cols; s += 32)
    if (valid[p * s_count + s] != 0.0) {
      ++used;
      mx = fmax(mx, lr[s]);
      mean += lr[s];
    }
  used = warp_sum(used);
  mx = warp_max(mx);
  mean = warp_sum(mean);
  // used == 0 past the end, so lse[r] is read only for rows that exist.
  const bool empty = used == 0 || (lse && !isfinite(lse[r]));
  const T shift = empty ? T(0) : (lse ? lse[r] : mx);
  T total = 0;
  for (int64_t s = lane; s < cols; s += 32) {
    T v = (!empty && valid[p * s_count + s] != 0.0) ? exp(lr[s] - shift) : T(0);
    er[s] = v;
    total += v;
  }
  total = warp_sum(total);
  if (lane != 0 || !inside) return;  // after the warp's last shuffle
  if (empty) {
    g[r] = 0;
    dhat[r] = 0;
    return;
  }
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
  int64_t r = blockIdx.x * int64_t(random_warps_per_block) + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  const bool inside = r < rows;
  const int64_t cols = inside ? s_count : 0;  // rows past the end: no slots
  int64_t p = r / n;
  int used = 0;
  for (int64_t s = lane; s < cols; s += 32) used += valid[p * s_count + s] != 0.0;
  used = warp_sum(used);
  if (!inside) return;  // after the warp's only shuffle
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
// Blocks of 32 R threads (lse_geometry's R), grid (row blocks, sequences): warp ty
// owns row r0 + ty of its sequence, lane j takes key j0 + j of each 32-key tile. Shared
// memory: the R owned rows and the tile, padded by one column against bank conflicts.
// Only [R, 32] logits exist at a time.

// Launch geometry: R rows per block, the largest power of two <= 32 whose shared memory
// (tiles_of_rows tiles of R rows plus one 32-row tile, each row d + 1 wide) fits in 48 KiB;
// rows = 0 when none fits. tiles_of_rows: 1 for lse_kernel, 2 for lse_grad_kernel.
struct LseGeometry {
  int rows = 0;             // R
  unsigned row_blocks = 0;  // grid.x; grid.y is the sequence
  unsigned threads = 0;     // 32 R
  std::size_t smem = 0;     // dynamic shared bytes
};
inline LseGeometry lse_geometry(int64_t n, int64_t d, std::size_t elem, int tiles_of_rows) {
  for (int rows = 32; rows >= 1; rows /= 2) {
    std::size_t bytes = static_cast<std::size_t>((tiles_of_rows * rows + 32) * (d + 1)) * elem;
    if (bytes <= 48 * 1024)
      return {rows, static_cast<unsigned>((n + rows - 1) / rows), static_cast<unsigned>(32 * rows),
              bytes};
  }
  return {};
}

// Rows [first, first + count) of src ([n, d]) into dst with row stride d + 1, zeros past n.
template <typename T>
__device__ void load_tile(const T* src, int64_t first, int64_t count, int64_t n, int64_t d,
                          T* dst) {
  for (int64_t i = threadIdx.x; i < count * d; i += blockDim.x) {
    int64_t rr = i / d, c = i % d;
    dst[rr * (d + 1) + c] = first + rr < n ? src[(first + rr) * d + c] : T(0);
  }
}

template <typename T>
__global__ void lse_kernel(const T* q, const T* k, AnyFloat mask, int64_t heads, int64_t n,
                           int64_t d, T scale, T* lse) {
  LRA_DYNAMIC_SHARED(smem_raw);
  const int64_t owned_rows = blockDim.x / 32;
  T* rows_s = reinterpret_cast<T*>(smem_raw);
  T* tile_s = rows_s + owned_rows * (d + 1);
  int64_t p = blockIdx.y, b = p / heads;
  int64_t r0 = blockIdx.x * owned_rows;
  int lane = threadIdx.x % 32, ty = threadIdx.x / 32;
  load_tile(q + p * n * d, r0, owned_rows, n, d, rows_s);
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
    T m_new = fmax(m, warp_max(s));
    T e = s == -INFINITY ? T(0) : exp(s - m_new);  // 0 throughout while m_new is -inf
    T tile_total = warp_sum(e);
    if (m_new == -INFINITY) continue;  // no real key yet (uniform per warp)
    total = total * exp(m - m_new) + tile_total;
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
  LRA_DYNAMIC_SHARED(smem_raw);
  const int64_t owned_rows = blockDim.x / 32;
  T* rows_s = reinterpret_cast<T*>(smem_raw);
  T* acc_s = rows_s + owned_rows * (d + 1);
  T* tile_s = acc_s + owned_rows * (d + 1);
  int64_t p = blockIdx.y, b = p / heads;
  int64_t r0 = blockIdx.x * owned_rows;
  int lane = threadIdx.x % 32, ty = threadIdx.x / 32;
  load_tile(owned + p * n * d, r0, owned_rows, n, d, rows_s);
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
      T wj = __shfl_sync(random_full_warp, w, jj);
      if (wj == T(0)) continue;  // uniform per warp
      const T* bj = tile_s + jj * (d + 1);
      for (int64_t c = lane; c < d; c += 32) acc[c] += wj * bj[c];
    }
  }
  if (a < n)
    for (int64_t c = lane; c < d; c += 32) out[(p * n + a) * d + c] += scale * acc[c];
}

}  // namespace lra::core::cuda
