// Fused CUDA kernels of core::matmul_softmax and core::softmax_scores_backward for short
// rows (at most max_cols scores per row: Nyström's F = softmax(Q K̃ᵀ) and A = softmax(Q̃ K̃ᵀ)
// with m landmarks, Linformer's softmax(Q (E K)ᵀ)). The launches are in matmul_softmax.cu;
// which calls come here is decided in one place, core/ops.cpp.
//
// A block owns a tile of BM rows of one matrix and computes their scores against all NMAX
// (>= the row length) columns in registers, the contraction staged through shared memory in
// chunks of depth_chunk; the row softmax (forward) or the softmax backward (backward)
// happens in registers, so no score matrix goes to global memory.
//
// Layout: 256 threads as TY x TX; thread (ty, tx) owns rows ty + TY r (r < RM) and columns
// tx + TX c (c < RN) of the tile, RM x RN = 32 scores. The TX threads of a row are adjacent
// lanes of one warp, so a row's max and sum are log2(TX) shuffles. Chosen by NMAX:
//   NMAX  TX  RN  TY  RM  BM (rows per block)
//     32   8   4  32   8  256
//     64  16   4  16   8  128
//    128  32   4   8   8   64
//    256  32   8   8   4   32
// Shared tiles have odd row strides (depth_chunk + 1, dc + 1, NMAX + 1): the reads of the
// inner loops hit distinct banks or broadcast.
//
// Backward (y = softmax(scale q kᵀ), dy = g hᵀ): per row tile, dy = g hᵀ in registers as the
// forward's scores, dS = scale y (dy - rowdot(y, dy)) into shared memory, then per chunk of
// dc head-dim columns (4 per thread, at most 64) d_q = dS k (written) and dSᵀ q. The rows of
// other tiles add to the same dk, so each tile writes its partial dk and sum_tiles_kernel
// adds the tiles in tile order (deterministic, no atomics); with one tile per matrix the
// partial is dk itself. For shapes where the partials would outweigh dS itself, the kernel
// writes dS instead and dk is a cuBLAS GEMM (dk_route; byte counts: matmul_softmax.cu).
//
// Device code only, so that the CPU emulation test (tests/core/cuda_kernel_emulation_test.cpp)
// runs these same kernels. No thread leaves early: rows and columns past the ends compute
// zeros and write nothing, and every thread reaches every barrier and shuffle.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "core/cuda/block_reduce.cuh"
#include "core/cuda/dynamic_shared.cuh"

namespace lra::core::cuda::scores {

constexpr int block_threads = 256;
constexpr int64_t max_cols = 256;  // the longest row (scores per row) these kernels take
constexpr int depth_chunk = 32;    // contraction columns per shared-memory stage

template <int NMAX> struct Tile {
  static_assert(NMAX == 32 || NMAX == 64 || NMAX == 128 || NMAX == 256, "row bound");
  static constexpr int tx = NMAX / 4 < 32 ? NMAX / 4 : 32;  // lanes along a row
  static constexpr int ty = block_threads / tx;
  static constexpr int rn = NMAX / tx;  // columns per thread
  static constexpr int rm = 32 / rn;    // rows per thread
  static constexpr int rows = ty * rm;  // BM: rows per block
  static constexpr int ld = depth_chunk + 1;  // stride of the staged contraction chunks
  static constexpr int lds = NMAX + 1;        // stride of the dS tile
  // Backward, d_q = dS k and dk = dSᵀ q: head-dim columns per chunk (4 per thread, at most
  // 64), their stride in shared memory, columns and keys per thread.
  static constexpr int dc = 4 * tx < 64 ? 4 * tx : 64;
  static constexpr int ldc = dc + 1;
  static constexpr int rq = dc / tx;
  static constexpr int rk = NMAX / ty;
};

// Host side: calls run(std::integral_constant<int, NMAX>) with the smallest NMAX of 32, 64,
// 128, 256 that holds a row of `cols` (1 <= cols <= max_cols).
template <typename Run> inline void with_row_tile(int64_t cols, Run&& run) {
  if (cols <= 32)
    run(std::integral_constant<int, 32>{});
  else if (cols <= 64)
    run(std::integral_constant<int, 64>{});
  else if (cols <= 128)
    run(std::integral_constant<int, 128>{});
  else
    run(std::integral_constant<int, 256>{});
}

// Row tiles of a matrix of `rows` rows.
template <int NMAX> inline int64_t row_tiles(int64_t rows) {
  return (rows + Tile<NMAX>::rows - 1) / Tile<NMAX>::rows;
}

template <typename T, int NMAX> constexpr size_t forward_smem() {
  using L = Tile<NMAX>;
  return static_cast<size_t>((L::rows + NMAX) * L::ld) * sizeof(T) + NMAX;
}
template <typename T, int NMAX> constexpr size_t backward_smem() {
  using L = Tile<NMAX>;  // the stages sized for the head-dim chunks (dc >= depth_chunk)
  return static_cast<size_t>((L::rows + NMAX) * L::ldc + L::rows * L::lds) * sizeof(T);
}

// Blocks per SM the register allocation must allow (__launch_bounds__): in f32, 4 for the
// forward (64 registers, no spills; its 25 to 38 KiB of shared memory allow as many) and 2
// for the backward (128 registers; its shared memory allows 2). f64 is for reference runs:
// registers unconstrained.
template <typename T> constexpr int forward_min_blocks() { return sizeof(T) == 4 ? 4 : 1; }
template <typename T> constexpr int backward_min_blocks() { return sizeof(T) == 4 ? 2 : 1; }

// p products op(a) [m, k] op(b) [k, n]; pa, pb = 1 (broadcast) or the product count.
struct Product {
  int64_t m, n, k, pa, pb, tiles;  // tiles: row tiles per product
  bool ta, tb;
};

// y [r, c] = softmax(q [r, d] k [c, d]ᵀ), dy = g [r, e] h [c, e]ᵀ, per matrix.
struct ScoreDims {
  int64_t r, c, d, e, tiles;
};

// How the backward gets dk (byte counts: matmul_softmax.cu): one tile per matrix writes dk
// itself; else per-tile partials summed by sum_tiles_kernel while they are fewer bytes than
// dS (tiles d <= r); else dS goes to memory and dk = dSᵀ q is a GEMM.
enum class DkRoute { direct, partials, through_ds };
inline DkRoute dk_route(const ScoreDims& s) {
  if (s.tiles == 1) return DkRoute::direct;
  return s.tiles * s.d <= s.r ? DkRoute::partials : DkRoute::through_ds;
}

template <int W, typename T> __device__ inline T group_max(T v) {
  for (int o = W / 2; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o, W));
  return v;
}
template <int W, typename T> __device__ inline T group_sum(T v) {
  for (int o = W / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o, W);
  return v;
}

// tile[r][e] (stride C + 1) = x[r0 + r][e0 + e] for r < ROWS, e < C, where x is `nrows` x
// `depth`, stored as src[row * depth + col], or transposed, src[col * nrows + row]; zero
// outside x. The faster index follows memory, so the reads coalesce either way; ROWS and C
// divide the block, so each thread keeps one column (or row) and steps over the other.
template <typename T, int ROWS, int C = depth_chunk>
__device__ inline void load_chunk(const T* __restrict__ src, bool trans, int64_t nrows,
                                  int64_t depth, int64_t r0, int64_t e0, T* tile) {
  static_assert(block_threads % C == 0 && block_threads % ROWS == 0, "whole passes");
  constexpr int LD = C + 1, passes = ROWS * C / block_threads;
  const int t = static_cast<int>(threadIdx.x);
  if (!trans) {
    constexpr int step = block_threads / C;  // rows per pass
    const int e = t % C;
    const bool col_in = e0 + e < depth;
    int64_t off = (r0 + t / C) * depth + e0 + e;
#pragma unroll 8
    for (int i = 0, r = t / C; i < passes; ++i, r += step, off += step * depth)
      tile[r * LD + e] = col_in && r0 + r < nrows ? src[off] : T(0);
  } else {
    constexpr int step = block_threads / ROWS;  // columns per pass
    const int r = t % ROWS;
    const bool row_in = r0 + r < nrows;
    int64_t off = (e0 + t / ROWS) * nrows + r0 + r;
#pragma unroll 8
    for (int i = 0, e = t / ROWS; i < passes; ++i, e += step, off += step * nrows)
      tile[r * LD + e] = row_in && e0 + e < depth ? src[off] : T(0);
  }
}

// acc[r][c] = the sum over the depth of x[i0 + ty + TY r][e] z[tx + TX c][e]: x is `xrows`
// x depth (transposed when xt), z is `zrows` x depth (transposed when zt), zero past their
// ends. xs ([BM][ld]) and zs ([NMAX][ld]) stage one chunk of the depth at a time. Starts
// and ends with threads that may still read the stages of a previous use: the caller
// synchronises before writing them again.
template <typename T, int NMAX>
__device__ inline void score_tile(const T* __restrict__ x, bool xt, int64_t xrows,
                                  const T* __restrict__ z, bool zt, int64_t zrows, int64_t depth,
                                  int64_t i0, T* xs, T* zs, T (&acc)[Tile<NMAX>::rm][Tile<NMAX>::rn]) {
  using L = Tile<NMAX>;
  const int tx = static_cast<int>(threadIdx.x) % L::tx, ty = static_cast<int>(threadIdx.x) / L::tx;
#pragma unroll
  for (int r = 0; r < L::rm; ++r)
#pragma unroll
    for (int c = 0; c < L::rn; ++c) acc[r][c] = T(0);
  for (int64_t e0 = 0; e0 < depth; e0 += depth_chunk) {
    __syncthreads();  // the previous stage's (or the caller's) readers are done
    load_chunk<T, L::rows>(x, xt, xrows, depth, i0, e0, xs);
    load_chunk<T, NMAX>(z, zt, zrows, depth, 0, e0, zs);
    __syncthreads();
#pragma unroll 4
    for (int e = 0; e < depth_chunk; ++e) {
      T xv[L::rm], zv[L::rn];
#pragma unroll
      for (int r = 0; r < L::rm; ++r) xv[r] = xs[(ty + L::ty * r) * L::ld + e];
#pragma unroll
      for (int c = 0; c < L::rn; ++c) zv[c] = zs[(tx + L::tx * c) * L::ld + e];
#pragma unroll
      for (int r = 0; r < L::rm; ++r)
#pragma unroll
        for (int c = 0; c < L::rn; ++c) acc[r][c] += xv[r] * zv[c];
    }
  }
}

// ------------------------------------------------------------------ forward
// y[p] = softmax(scale op(a[p]) op(b[p])) row by row, one block per BM rows of one product
// (grid = products x s.tiles). The key mask row of product p is p / mats_per_mask (the
// mask's batch is the product's leading dim). Masked keys get exactly 0; a row without a
// real key is all 0 (as core/cuda/row_kernels.cuh and the CPU). s.k >= 1.
template <typename T, int NMAX>
__global__ void __launch_bounds__(block_threads, forward_min_blocks<T>())
    matmul_softmax_kernel(const T* __restrict__ a, const T* __restrict__ b, Product s,
                          const void* mask, bool mask_f32, int64_t mats_per_mask, T scale,
                          T* __restrict__ y) {
  using L = Tile<NMAX>;
  LRA_DYNAMIC_SHARED(smem);
  T* as = reinterpret_cast<T*>(smem);  // [BM][ld]
  T* bs = as + L::rows * L::ld;        // [NMAX][ld]
  unsigned char* real = reinterpret_cast<unsigned char*>(bs + NMAX * L::ld);  // [NMAX]
  const int tx = static_cast<int>(threadIdx.x) % L::tx, ty = static_cast<int>(threadIdx.x) / L::tx;
  const int64_t p = blockIdx.x / s.tiles, i0 = (blockIdx.x % s.tiles) * L::rows;
  const int64_t mrow = mask ? (p / mats_per_mask) * s.n : 0;
  for (int j = static_cast<int>(threadIdx.x); j < NMAX; j += block_threads)
    real[j] = j < s.n && (!mask || mask_keep(mask, mask_f32, mrow + j));
  T acc[L::rm][L::rn];
  // op(b) [k, n] as rows of keys: b [n, k] when transposed (tb), else its transpose.
  score_tile<T, NMAX>(a + (s.pa == 1 ? 0 : p * s.m * s.k), s.ta, s.m,
                      b + (s.pb == 1 ? 0 : p * s.k * s.n), !s.tb, s.n, s.k, i0, as, bs, acc);
  // score_tile's barriers (s.k >= 1: at least one stage) order the flags before these reads.
  const T neg_inf = -static_cast<T>(INFINITY);
#pragma unroll
  for (int r = 0; r < L::rm; ++r) {
    T mx = neg_inf;
#pragma unroll
    for (int c = 0; c < L::rn; ++c)
      if (real[tx + L::tx * c]) mx = fmax(mx, scale * acc[r][c]);
    mx = group_max<L::tx>(mx);
    T sum = T(0);
#pragma unroll
    for (int c = 0; c < L::rn; ++c) {
      const bool keep = real[tx + L::tx * c] && mx != neg_inf;
      acc[r][c] = keep ? exp(scale * acc[r][c] - mx) : T(0);
      sum += acc[r][c];
    }
    sum = group_sum<L::tx>(sum);
    const T inv = sum > T(0) ? T(1) / sum : T(0);
    const int64_t row = i0 + ty + L::ty * r;
    if (row >= s.m) continue;  // after the row's last shuffle
    T* yr = y + (p * s.m + row) * s.n;
#pragma unroll
    for (int c = 0; c < L::rn; ++c)
      if (tx + L::tx * c < s.n) yr[tx + L::tx * c] = acc[r][c] * inv;
  }
}

// ------------------------------------------------------------------ backward
// Per BM rows of one matrix (grid = matrices x s.tiles): dS = scale y (g hᵀ - rowdot), then
// d_q = dS k for these rows, and either dk_part[p][tile] = dSᵀ q over these rows (the
// partial dk, [c, d], when dk_part is given) or ds_out = dS (else). s.d, s.e >= 1.
template <typename T, int NMAX>
__global__ void __launch_bounds__(block_threads, backward_min_blocks<T>())
    scores_backward_kernel(const T* __restrict__ y, const T* __restrict__ q,
                           const T* __restrict__ k, const T* __restrict__ g,
                           const T* __restrict__ h, ScoreDims s, T scale, T* __restrict__ d_q,
                           T* __restrict__ dk_part, T* __restrict__ ds_out) {
  using L = Tile<NMAX>;
  LRA_DYNAMIC_SHARED(smem);
  T* xs = reinterpret_cast<T*>(smem);  // [BM][ld], then [BM][ldc]: chunks of g, then of q
  T* zs = xs + L::rows * L::ldc;       // [NMAX][ld], then [NMAX][ldc]: chunks of h, then of k
  T* dss = zs + NMAX * L::ldc;         // [BM][lds]: dS of the tile
  const int tx = static_cast<int>(threadIdx.x) % L::tx, ty = static_cast<int>(threadIdx.x) / L::tx;
  const int64_t p = blockIdx.x / s.tiles, tile = blockIdx.x % s.tiles, i0 = tile * L::rows;

  T acc[L::rm][L::rn];  // dy = g hᵀ
  score_tile<T, NMAX>(g + p * s.r * s.e, false, s.r, h + p * s.c * s.e, false, s.c, s.e, i0, xs,
                      zs, acc);
#pragma unroll
  for (int r = 0; r < L::rm; ++r) {
    const int64_t row = i0 + ty + L::ty * r;
    T yv[L::rn], dot = T(0);
#pragma unroll
    for (int c = 0; c < L::rn; ++c) {
      const int64_t col = tx + L::tx * c;
      yv[c] = row < s.r && col < s.c ? y[(p * s.r + row) * s.c + col] : T(0);
      dot += yv[c] * acc[r][c];
    }
    dot = group_sum<L::tx>(dot);
#pragma unroll
    for (int c = 0; c < L::rn; ++c) {
      const int64_t col = tx + L::tx * c;
      const T ds = scale * yv[c] * (acc[r][c] - dot);  // 0 past the ends (y is 0 there)
      dss[(ty + L::ty * r) * L::lds + col] = ds;
      if (!dk_part && row < s.r && col < s.c) ds_out[(p * s.r + row) * s.c + col] = ds;
    }
  }
  const int tile_rows = s.r - i0 < L::rows ? static_cast<int>(s.r - i0) : L::rows;
  const int keys = static_cast<int>(s.c);
  for (int64_t d0 = 0; d0 < s.d; d0 += L::dc) {
    __syncthreads();  // dS written; the stages' previous readers done
    load_chunk<T, NMAX, L::dc>(k + p * s.c * s.d, false, s.c, s.d, 0, d0, zs);
    if (dk_part) load_chunk<T, L::rows, L::dc>(q + p * s.r * s.d, false, s.r, s.d, i0, d0, xs);
    __syncthreads();
    // d_q[row][d0 + tx + TX j] = the sum over keys of dS[row][key] k[key][d0 + tx + TX j].
    T dq[L::rm][L::rq];
#pragma unroll
    for (int r = 0; r < L::rm; ++r)
#pragma unroll
      for (int j = 0; j < L::rq; ++j) dq[r][j] = T(0);
    for (int key = 0; key < keys; ++key) {
      T kv[L::rq];
#pragma unroll
      for (int j = 0; j < L::rq; ++j) kv[j] = zs[key * L::ldc + tx + L::tx * j];
#pragma unroll
      for (int r = 0; r < L::rm; ++r) {
        const T dsv = dss[(ty + L::ty * r) * L::lds + key];
#pragma unroll
        for (int j = 0; j < L::rq; ++j) dq[r][j] += dsv * kv[j];
      }
    }
#pragma unroll
    for (int r = 0; r < L::rm; ++r) {
      const int64_t row = i0 + ty + L::ty * r;
#pragma unroll
      for (int j = 0; j < L::rq; ++j) {
        const int64_t col = d0 + tx + L::tx * j;
        if (row < s.r && col < s.d) d_q[(p * s.r + row) * s.d + col] = dq[r][j];
      }
    }
    if (!dk_part) continue;  // the same for every thread: the barriers stay matched
    // The tile's dk[key][d0 + tx + TX j] = the sum over its rows of dS[row][key] q[row][...].
    T dk[L::rk][L::rq];
#pragma unroll
    for (int i = 0; i < L::rk; ++i)
#pragma unroll
      for (int j = 0; j < L::rq; ++j) dk[i][j] = T(0);
    for (int row = 0; row < tile_rows; ++row) {
      T qv[L::rq];
#pragma unroll
      for (int j = 0; j < L::rq; ++j) qv[j] = xs[row * L::ldc + tx + L::tx * j];
#pragma unroll
      for (int i = 0; i < L::rk; ++i) {
        const T dsv = dss[row * L::lds + ty + L::ty * i];
#pragma unroll
        for (int j = 0; j < L::rq; ++j) dk[i][j] += dsv * qv[j];
      }
    }
    T* part = dk_part + (p * s.tiles + tile) * s.c * s.d;
#pragma unroll
    for (int i = 0; i < L::rk; ++i) {
      const int64_t key = ty + L::ty * i;
#pragma unroll
      for (int j = 0; j < L::rq; ++j) {
        const int64_t col = d0 + tx + L::tx * j;
        if (key < s.c && col < s.d) part[key * s.d + col] = dk[i][j];
      }
    }
  }
}

// out[p][e] = the sum over t < tiles of part[p][t][e], in t order (e < size).
template <typename T>
__global__ void sum_tiles_kernel(const T* __restrict__ part, int64_t mats, int64_t tiles,
                                 int64_t size, T* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < mats * size;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i / size, e = i % size;
    const T* src = part + p * tiles * size + e;
    T sum = T(0);
    for (int64_t t = 0; t < tiles; ++t) sum += src[t * size];
    out[i] = sum;
  }
}

}  // namespace lra::core::cuda::scores
