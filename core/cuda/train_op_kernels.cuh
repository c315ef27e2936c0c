#pragma once
// The CUDA kernels of the training ops (core/cuda/train_kernels.h): device code and the
// host-side launch helpers only (grid sizes, embedding_backward's grouping of rows by id,
// the loss's row sum); the launches are in core/cuda/train_ops.cu. Kept in a header so that
// the CPU emulation test (tests/core/cuda_emulation_train_ops_test.cpp) runs the very same
// kernels with the same launch geometry.
//
// Every sum runs in a fixed order (no atomics), so every result is the same bits on every
// run. Kernels are templates (or `template <int = 0>`) so that the header defines them
// inline. masked_mean_kernel, the one kernel with a barrier, has no early exit: every
// thread of a block reaches the barrier.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/cuda/gelu.cuh"
#include "core/philox.h"

namespace lra::core::cuda::train {

constexpr int threads = 256;  // per block of the grid-stride kernels

// Blocks for n grid-stride items: one item per thread, capped (the loop takes the rest).
inline int grid_for(int64_t n) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65535LL * 8)));
}

#define LRA_TRAIN_GRID_STRIDE(i, n)                                         \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

__device__ inline double mask_value(const void* mask, bool f32, int64_t i) {
  return f32 ? static_cast<double>(static_cast<const float*>(mask)[i])
             : static_cast<const double*>(mask)[i];
}

template <typename T>
__global__ void add_bias_kernel(T* x, const T* bias, int64_t c, int64_t n) {
  LRA_TRAIN_GRID_STRIDE(i, n) x[i] += bias[i % c];
}

// ---------------------------------------------------------------- embeddings
template <typename T>
__global__ void gather_kernel(const T* table, const int32_t* ids, int64_t c, int64_t n, T* y) {
  LRA_TRAIN_GRID_STRIDE(i, n) y[i] = table[static_cast<int64_t>(ids[i / c]) * c + i % c];
}

// Scatter-add without atomics, in two fixed-order passes. The rows are grouped by id
// (perm, increasing rows within an id) and each id's rows cut into chunks of at most
// scatter_chunk rows: pass 1 sums each chunk per column in row order, pass 2 adds an
// id's chunk sums in order onto dtable. The order depends only on ids: same bits every run.
constexpr int64_t scatter_chunk = 32;

// The host-side plan of the scatter, uploaded as one buffer:
// packed = perm (rows) | chunk_begin (chunks + 1) | gid (groups) | group_chunk (groups + 1).
// perm lists the rows grouped by id (a stable counting sort: each id's rows in increasing
// order); chunk k covers perm[chunk_begin[k], chunk_begin[k + 1]); group g (id gid[g]) owns
// chunks [group_chunk[g], group_chunk[g + 1]).
struct ScatterPlan {
  std::vector<int32_t> packed;
  int64_t rows = 0, chunks = 0, groups = 0;
  int64_t chunk_begin_at() const { return rows; }
  int64_t gid_at() const { return rows + chunks + 1; }
  int64_t group_chunk_at() const { return rows + chunks + 1 + groups; }
};

// ids in [0, vocab), fewer than 2^31 of them (checked by the caller).
inline ScatterPlan scatter_plan(const std::vector<int32_t>& ids, int64_t vocab) {
  ScatterPlan p;
  p.rows = static_cast<int64_t>(ids.size());
  // Counting sort by id (stable, O(rows + vocab)).
  std::vector<int32_t> offset(static_cast<std::size_t>(vocab) + 1, 0);
  for (int32_t id : ids) ++offset[static_cast<std::size_t>(id) + 1];
  for (std::size_t v = 1; v < offset.size(); ++v) offset[v] += offset[v - 1];
  std::vector<int32_t> perm(static_cast<std::size_t>(p.rows));
  for (int64_t r = 0; r < p.rows; ++r)
    perm[static_cast<std::size_t>(
        offset[static_cast<std::size_t>(ids[static_cast<std::size_t>(r)])]++)] =
        static_cast<int32_t>(r);
  std::vector<int32_t> chunk_begin, gid, group_chunk;
  for (int64_t k = 0; k < p.rows; ++k) {
    const int32_t id = ids[static_cast<std::size_t>(perm[static_cast<std::size_t>(k)])];
    const bool new_group = gid.empty() || gid.back() != id;
    if (new_group) {
      gid.push_back(id);
      group_chunk.push_back(static_cast<int32_t>(chunk_begin.size()));
    }
    if (new_group || k - chunk_begin.back() == scatter_chunk)
      chunk_begin.push_back(static_cast<int32_t>(k));
  }
  p.chunks = static_cast<int64_t>(chunk_begin.size());
  p.groups = static_cast<int64_t>(gid.size());
  chunk_begin.push_back(static_cast<int32_t>(p.rows));
  group_chunk.push_back(static_cast<int32_t>(p.chunks));
  p.packed.reserve(perm.size() + chunk_begin.size() + gid.size() + group_chunk.size());
  for (const auto* part : {&perm, &chunk_begin, &gid, &group_chunk})
    p.packed.insert(p.packed.end(), part->begin(), part->end());
  return p;
}

template <typename T>
__global__ void scatter_chunks_kernel(const T* dy, const int32_t* perm, const int32_t* chunk_begin,
                                      int64_t chunks, int64_t c, T* partial) {
  LRA_TRAIN_GRID_STRIDE(e, chunks * c) {
    int64_t k = e / c, j = e % c;
    T acc = T(0);
    for (int32_t r = chunk_begin[k]; r < chunk_begin[k + 1]; ++r)
      acc += dy[static_cast<int64_t>(perm[r]) * c + j];
    partial[e] = acc;
  }
}

template <typename T>
__global__ void scatter_groups_kernel(const T* partial, const int32_t* gid,
                                      const int32_t* group_chunk, int64_t groups, int64_t c,
                                      T* dtable) {
  LRA_TRAIN_GRID_STRIDE(e, groups * c) {
    int64_t g = e / c, j = e % c;
    T* dst = dtable + static_cast<int64_t>(gid[g]) * c + j;
    T acc = *dst;
    for (int32_t k = group_chunk[g]; k < group_chunk[g + 1]; ++k)
      acc += partial[static_cast<int64_t>(k) * c + j];
    *dst = acc;
  }
}

// ---------------------------------------------------------------- positions, CLS row
template <typename T>
__global__ void add_positions_kernel(T* x, const T* pos, int64_t nc, int64_t total) {
  LRA_TRAIN_GRID_STRIDE(i, total) x[i] += pos[i % nc];
}

// dpos[t, j] += dy[b, t, j] over b in order (one thread per (t, j)).
template <typename T>
__global__ void add_positions_backward_kernel(const T* dy, int64_t b, int64_t nc, T* dpos) {
  LRA_TRAIN_GRID_STRIDE(e, nc) {
    T acc = dpos[e];
    for (int64_t i = 0; i < b; ++i) acc += dy[i * nc + e];
    dpos[e] = acc;
  }
}

template <typename T>
__global__ void prepend_kernel(const T* x, const T* cls, int64_t n, int64_t c, int64_t total,
                               T* y) {
  LRA_TRAIN_GRID_STRIDE(e, total) {
    int64_t j = e % c, r = (e / c) % (n + 1), b = e / (c * (n + 1));
    y[e] = r == 0 ? cls[j] : x[(b * n + r - 1) * c + j];
  }
}

template <typename T>
__global__ void prepend_backward_dx_kernel(const T* dy, int64_t n, int64_t c, int64_t total,
                                           T* dx) {
  LRA_TRAIN_GRID_STRIDE(e, total) {
    int64_t j = e % c, r = (e / c) % n, b = e / (c * n);
    dx[e] = dy[(b * (n + 1) + r + 1) * c + j];
  }
}

template <typename T>
__global__ void prepend_backward_cls_kernel(const T* dy, int64_t b, int64_t n, int64_t c, T* dcls) {
  LRA_TRAIN_GRID_STRIDE(j, c) {
    T acc = T(0);
    for (int64_t i = 0; i < b; ++i) acc += dy[i * (n + 1) * c + j];
    dcls[j] = acc;
  }
}

// ---------------------------------------------------------------- masked mean
// Block (mean_cols, mean_groups) per (mean_cols columns, sequence b): grid
// (mean_col_blocks(C), B).
constexpr unsigned mean_cols = 32, mean_groups = 8;
inline unsigned mean_col_blocks(int64_t c) {
  return static_cast<unsigned>((c + mean_cols - 1) / mean_cols);
}

// Row group ty sums positions ty, ty + 8, ... in double, then the 8 partials are added in
// order (a fixed tree: deterministic).
template <typename T>
__global__ void masked_mean_kernel(const T* x, const void* mask, bool mf32, int64_t n, int64_t c,
                                   T* y) {
  __shared__ double sums[mean_groups][mean_cols];
  __shared__ double counts[mean_groups][mean_cols];
  int64_t i = blockIdx.y, j = blockIdx.x * int64_t{mean_cols} + threadIdx.x;
  double acc = 0, count = 0;
  for (int64_t t = threadIdx.y; t < n; t += mean_groups) {
    if (mask && mask_value(mask, mf32, i * n + t) == 0) continue;
    count += 1;
    if (j < c) acc += static_cast<double>(x[(i * n + t) * c + j]);
  }
  sums[threadIdx.y][threadIdx.x] = acc;
  counts[threadIdx.y][threadIdx.x] = count;
  __syncthreads();
  if (threadIdx.y == 0 && j < c) {
    double total = 0, total_count = 0;
    for (unsigned q = 0; q < mean_groups; ++q) {
      total += sums[q][threadIdx.x];
      total_count += counts[q][threadIdx.x];
    }
    y[i * c + j] = static_cast<T>(total * (total_count > 0 ? 1.0 / total_count : 0.0));
  }
}

// inv[i] = 1 / count[i], 0 for a sequence without real tokens (count from
// real_positions_kernel, core/cuda/segment_kernels.cuh).
template <int = 0>
__global__ void inverse_counts_kernel(const int* count, int64_t b, double* inv) {
  LRA_TRAIN_GRID_STRIDE(i, b) inv[i] = count[i] > 0 ? 1.0 / count[i] : 0.0;
}

template <typename T>
__global__ void masked_mean_backward_kernel(const T* dy, const void* mask, bool mf32,
                                            const double* inv, int64_t n, int64_t c, int64_t total,
                                            T* dx) {
  LRA_TRAIN_GRID_STRIDE(e, total) {
    int64_t j = e % c, t = (e / c) % n, i = e / (c * n);
    bool real = !mask || mask_value(mask, mf32, i * n + t) != 0;
    dx[e] = real ? dy[i * c + j] * static_cast<T>(inv[i]) : T(0);
  }
}

// ---------------------------------------------------------------- pair features
template <typename T>
__global__ void pair_kernel(const T* u, const T* v, int64_t c, int64_t n, T* y) {
  LRA_TRAIN_GRID_STRIDE(e, n) {
    int64_t i = e / c, j = e % c;
    T a = u[e], w = v[e];
    T* row = y + i * 4 * c;
    row[j] = a;
    row[c + j] = w;
    row[2 * c + j] = a * w;
    row[3 * c + j] = a - w;
  }
}

template <typename T>
__global__ void pair_backward_kernel(const T* u, const T* v, const T* dy, int64_t c, int64_t n,
                                     T* du, T* dv) {
  LRA_TRAIN_GRID_STRIDE(e, n) {
    int64_t i = e / c, j = e % c;
    const T* g = dy + i * 4 * c;
    du[e] = g[j] + g[2 * c + j] * v[e] + g[3 * c + j];
    dv[e] = g[c + j] + g[2 * c + j] * u[e] - g[3 * c + j];
  }
}

// ---------------------------------------------------------------- dropout
// Drop an element when its 32-bit draw is below p * 2^32 (as on the CPU).
inline uint64_t dropout_threshold(double p) { return static_cast<uint64_t>(std::ldexp(p, 32)); }

// The 32-bit draws of elements 4 blk .. 4 blk + 3 of a dropout site (see
// core::dropout_keep_mask).
__device__ inline philox::Block dropout_draws(int64_t blk, uint64_t seed, uint64_t stream) {
  return philox::philox4x32_10(
      static_cast<uint32_t>(blk), static_cast<uint32_t>(static_cast<uint64_t>(blk) >> 32),
      static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32),
      static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// One thread per Philox block of four elements (see core::dropout_keep_mask).
template <typename T>
__global__ void keep_mask_kernel(T* mask, int64_t total, uint64_t threshold, uint64_t seed,
                                 uint64_t stream, T keep) {
  LRA_TRAIN_GRID_STRIDE(blk, (total + 3) / 4) {
    philox::Block bits = dropout_draws(blk, seed, stream);
    int64_t base = blk * 4;
    for (int q = 0; q < 4 && base + q < total; ++q)
      mask[base + q] = static_cast<uint64_t>(bits.v[q]) < threshold ? T(0) : keep;
  }
}

// ---------------------------------------------------------------- fused block epilogues
// A product rounded on its own, never contracted with the add that follows into one fused
// multiply-add: the fused ops give the bits of the composed kernels they replace (the CPU
// builds in ISO mode, where nothing is contracted either).
#ifdef __CUDACC__
__device__ inline float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double mul_rn(double a, double b) { return __dmul_rn(a, b); }
#else
template <typename T> T mul_rn(T a, T b) { return a * b; }
#endif

// out = residual + dropout(y + bias), one thread per Philox block of four elements;
// bias and residual may be null; without `dropping` (p = 0) nothing is drawn. out may alias y or
// residual: each element is read before it is written, by the same thread.
template <typename T>
__global__ void bias_dropout_add_kernel(const T* y, const T* bias, int64_t c, const T* residual,
                                        int64_t total, bool dropping, uint64_t threshold,
                                        uint64_t seed, uint64_t stream, T keep, T* out) {
  LRA_TRAIN_GRID_STRIDE(blk, (total + 3) / 4) {
    philox::Block bits{};
    if (dropping) bits = dropout_draws(blk, seed, stream);
    const int64_t base = blk * 4;
    for (int q = 0; q < 4 && base + q < total; ++q) {
      const int64_t i = base + q;
      T v = y[i];
      if (bias) v += bias[i % c];
      if (dropping) v = mul_rn(v, static_cast<uint64_t>(bits.v[q]) < threshold ? T(0) : keep);
      out[i] = residual ? residual[i] + v : v;
    }
  }
}

template <typename T>
__global__ void bias_gelu_kernel(const T* h, const T* bias, int64_t c, int64_t n, T* g) {
  LRA_TRAIN_GRID_STRIDE(i, n) g[i] = gelu_value(static_cast<T>(h[i] + bias[i % c]));
}

template <typename T>
__global__ void bias_gelu_backward_kernel(const T* h, const T* bias, const T* dg, int64_t c,
                                          int64_t n, T* dz) {
  LRA_TRAIN_GRID_STRIDE(i, n) dz[i] = mul_rn(dg[i], gelu_slope(static_cast<T>(h[i] + bias[i % c])));
}

// out [B, H, N, D] from y [B * N, H * D] plus bias [H * D], one thread per output element
// (consecutive threads write consecutive d, and read a run of D consecutive elements of y).
template <typename T>
__global__ void bias_heads_first_kernel(const T* y, const T* bias, int64_t heads, int64_t seq,
                                        int64_t d, int64_t n, T* out) {
  LRA_TRAIN_GRID_STRIDE(i, n) {
    const int64_t j = i % d, row = i / d;  // row = (b, h, s)
    const int64_t s = row % seq, bh = row / seq, h = bh % heads, b = bh / heads;
    out[i] = y[(b * seq + s) * heads * d + h * d + j] + bias[h * d + j];
  }
}

// ---------------------------------------------------------------- cross-entropy
// One thread per row (K is the class count: small). out[2i] = loss_i, out[2i+1] = hit_i.
template <typename T>
__global__ void cross_entropy_kernel(const T* logits, const int32_t* labels, int64_t b, int64_t k,
                                     T* probs, double* out) {
  LRA_TRAIN_GRID_STRIDE(i, b) {
    const T* row = logits + i * k;
    int64_t arg = 0;
    for (int64_t j = 1; j < k; ++j)
      if (row[j] > row[arg]) arg = j;
    double mx = static_cast<double>(row[arg]), z = 0;
    for (int64_t j = 0; j < k; ++j) z += ::exp(static_cast<double>(row[j]) - mx);
    double log_z = mx + ::log(z);
    for (int64_t j = 0; j < k; ++j)
      probs[i * k + j] = static_cast<T>(::exp(static_cast<double>(row[j]) - log_z));
    int32_t label = labels[i];
    out[2 * i] = log_z - static_cast<double>(row[label]);
    out[2 * i + 1] = arg == label ? 1.0 : 0.0;
  }
}

// The mean loss and the hit count from cross_entropy_kernel's rows (read back to the
// host), summed in row order as on the CPU. b > 0.
inline double mean_loss_of_rows(const std::vector<double>& rows, int64_t b, int64_t& correct) {
  double total = 0;
  correct = 0;
  for (int64_t i = 0; i < b; ++i) {
    total += rows[static_cast<std::size_t>(2 * i)];
    if (rows[static_cast<std::size_t>(2 * i + 1)] != 0) ++correct;
  }
  return total / static_cast<double>(b);
}

// One thread: stats = [sum of the row losses in row order, hits].
template <int = 0>
__global__ void sum_stats_kernel(const double* rows, int64_t b, double* stats) {
  double loss = 0, hits = 0;
  for (int64_t i = 0; i < b; ++i) {
    loss += rows[2 * i];
    hits += rows[2 * i + 1];
  }
  stats[0] = loss;
  stats[1] = hits;
}

template <typename T>
__global__ void cross_entropy_backward_kernel(const T* probs, const int32_t* labels, int64_t k,
                                              int64_t total, T inv, T* dx) {
  LRA_TRAIN_GRID_STRIDE(e, total) {
    int64_t i = e / k, j = e % k;
    dx[e] = (probs[e] - (j == labels[i] ? T(1) : T(0))) * inv;
  }
}

#undef LRA_TRAIN_GRID_STRIDE

}  // namespace lra::core::cuda::train
