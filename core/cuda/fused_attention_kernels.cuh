// Flash-style exact softmax attention on CUDA (see core/cuda/fused_attention.h).
//
// Layout of every kernel: 256 threads as a 16 x 16 grid; thread (ty, tx) owns rows
// ty + 16 r and columns tx + 16 c of each tile it computes, so the 16 threads of a row sit
// in one half-warp and row reductions are four shuffles. Tiles whose rows are read across
// lanes (Q, K, V, dO against the head dim) are padded to DMAX + 1 columns: conflict-free.
//
// Forward (one block per query tile): S = scale Q Kᵀ per key tile, online max and sum,
// P (times the dropout multipliers) through shared memory into O. lse = m + log(l).
// Backward, with delta_i = dO_i · O_i (equal to Σ_j P_ij dP_ij, dropout included):
//   dK/dV kernel, one block per key tile, streams query tiles: Pᵀ and dSᵀ tiles;
//   dQ kernel, one block per query tile, streams key tiles: dS tiles.
// dS = scale P (dP keep - delta), dP = dO Vᵀ: the recomputation costs two extra tile
// products against atomics, and keeps the results bit-reproducible.
//
// Device code only (the launches are in fused_attention.cu), so that the CPU emulation
// test (tests/core/cuda_kernel_emulation_test.cpp) runs these same kernels.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "core/cuda/dynamic_shared.cuh"
#include "core/ops_fused_attention.h"
#include "core/philox.h"
#include "core/tensor.h"

namespace lra::core::cuda::flash {

constexpr int block_threads = 256;

// Rows per query tile and per key tile: 64 in fp32, 32 in fp64 (shared memory bound).
template <typename T> constexpr int tile_rows() { return sizeof(T) == 4 ? 64 : 32; }

struct Dropout {
  bool on;
  double p;  // as the CPU: thr = T(p), multiplier T(1 / (1 - p))
  uint64_t seed, offset;
};

struct Geometry {
  int64_t heads, n;
  int d;
  const void* mask;  // [B, N] or null
  bool mask_f32;
};

// Host side: a call's geometry and dropout from its tensors, and the head-dim tile.
// Calls run(std::integral_constant<int, DMAX>) with the smallest DMAX of 32, 64, 128 >= d.
template <typename Run> inline void with_head_dim_tile(int64_t d, Run&& run) {
  if (d <= 32)
    run(std::integral_constant<int, 32>{});
  else if (d <= 64)
    run(std::integral_constant<int, 64>{});
  else
    run(std::integral_constant<int, 128>{});
}

inline Geometry geometry_of(const Tensor& q, const Tensor& key_mask) {
  Geometry g;
  g.heads = q.dim(1);
  g.n = q.dim(2);
  g.d = static_cast<int>(q.dim(3));
  g.mask = key_mask.defined() ? key_mask.raw_data() : nullptr;
  g.mask_f32 = key_mask.defined() && key_mask.dtype() == DType::f32;
  return g;
}

inline Dropout dropout_of(const AttentionDropout& d) { return Dropout{d.p > 0, d.p, d.seed, d.offset}; }

__device__ inline bool key_is_real(const Geometry& g, int64_t b, int64_t j) {
  if (j >= g.n) return false;
  if (!g.mask) return true;
  return g.mask_f32 ? static_cast<const float*>(g.mask)[b * g.n + j] != 0.0f
                    : static_cast<const double*>(g.mask)[b * g.n + j] != 0.0;
}

// The multiplier of weight `e` (its index in [B, H, N, N] order plus the offset): the draw of
// core::dropout_mask (core::fill_uniform, then the threshold), as core/cpu/fused_attention.cpp.
template <typename T> __device__ inline T keep_multiplier(const Dropout& dr, uint64_t e) {
  const philox::Block blk = philox::stream_block(dr.seed, e / 4, philox::uniform_tag);
  const unsigned w = static_cast<unsigned>(e % 4);  // selects, so the block stays in registers
  const uint32_t bits = w == 0 ? blk.v[0] : (w == 1 ? blk.v[1] : (w == 2 ? blk.v[2] : blk.v[3]));
  T u = static_cast<T>(static_cast<double>(bits) * 0x1p-32);
  if (u >= T(1)) u = nextafter(T(1), T(0));
  return u < static_cast<T>(dr.p) ? T(0) : static_cast<T>(1.0 / (1.0 - dr.p));
}

template <typename T> __device__ inline T half_warp_max(T v) {
  for (int off = 8; off > 0; off >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, off, 16));
  return v;
}
template <typename T> __device__ inline T half_warp_sum(T v) {
  for (int off = 8; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off, 16);
  return v;
}

// rows [r0, r0 + ROWS) of one (batch, head)'s [N, d] matrix into a [ROWS][LD] tile; rows
// past N and columns past d are zero.
template <typename T, int ROWS, int DMAX, int LD>
__device__ inline void load_tile(const T* __restrict__ src, int64_t r0, int64_t n, int d, T* tile) {
  for (int idx = threadIdx.x; idx < ROWS * DMAX; idx += block_threads) {
    int r = idx / DMAX, c = idx % DMAX;
    int64_t row = r0 + r;
    tile[r * LD + c] = (row < n && c < d) ? src[row * d + c] : T(0);
  }
}

// ------------------------------------------------------------------ forward
template <typename T, int DMAX>
size_t forward_smem() {
  constexpr int BM = tile_rows<T>(), BN = BM, LD = DMAX + 1;
  return (BM * LD + BN * LD + BN * DMAX + BM * (BN + 1)) * sizeof(T) + BN;
}

template <typename T, int DMAX>
__global__ void __launch_bounds__(block_threads)
    forward_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                   Geometry g, T scale, Dropout dr, int64_t tiles, T* __restrict__ out,
                   T* __restrict__ lse) {
  constexpr int BM = tile_rows<T>(), BN = BM, RM = BM / 16, RN = BN / 16, RD = DMAX / 16;
  constexpr int LD = DMAX + 1, LP = BN + 1;
  LRA_DYNAMIC_SHARED(smem);
  T* qs = reinterpret_cast<T*>(smem);  // [BM][LD]
  T* ks = qs + BM * LD;                // [BN][LD]
  T* vs = ks + BN * LD;                // [BN][DMAX]
  T* ps = vs + BN * DMAX;              // [BM][LP]
  unsigned char* real = reinterpret_cast<unsigned char*>(ps + BM * LP);  // [BN]
  const T neg_inf = -static_cast<T>(INFINITY);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t bh = blockIdx.x / tiles, i0 = (blockIdx.x % tiles) * BM, b = bh / g.heads;
  const int64_t base = bh * g.n * g.d;

  load_tile<T, BM, DMAX, LD>(q + base, i0, g.n, g.d, qs);
  T m[RM], l[RM], acc[RM][RD];
  #pragma unroll
  for (int r = 0; r < RM; ++r) {
    m[r] = neg_inf;
    l[r] = T(0);
    #pragma unroll
    for (int c = 0; c < RD; ++c) acc[r][c] = T(0);
  }
  for (int64_t j0 = 0; j0 < g.n; j0 += BN) {
    __syncthreads();  // the previous tile's readers are done
    load_tile<T, BN, DMAX, LD>(k + base, j0, g.n, g.d, ks);
    load_tile<T, BN, DMAX, DMAX>(v + base, j0, g.n, g.d, vs);
    for (int jj = threadIdx.x; jj < BN; jj += block_threads) real[jj] = key_is_real(g, b, j0 + jj);
    __syncthreads();
    T s[RM][RN];
    #pragma unroll
    for (int r = 0; r < RM; ++r)
      #pragma unroll
      for (int c = 0; c < RN; ++c) s[r][c] = T(0);
    // Tiles are zero past d: a multiple of 4 lets the loop unroll.
#pragma unroll 4
    for (int e = 0; e < ((g.d + 3) & ~3); ++e) {
      T qr[RM], kc[RN];
      #pragma unroll
      for (int r = 0; r < RM; ++r) qr[r] = qs[(ty + 16 * r) * LD + e];
      #pragma unroll
      for (int c = 0; c < RN; ++c) kc[c] = ks[(tx + 16 * c) * LD + e];
      #pragma unroll
      for (int r = 0; r < RM; ++r)
        #pragma unroll
        for (int c = 0; c < RN; ++c) s[r][c] += qr[r] * kc[c];
    }
    #pragma unroll
    for (int r = 0; r < RM; ++r) {
      T mx = neg_inf;
      #pragma unroll
      for (int c = 0; c < RN; ++c) {
        s[r][c] = real[tx + 16 * c] ? s[r][c] * scale : neg_inf;
        mx = fmax(mx, s[r][c]);
      }
      const T m_new = fmax(m[r], half_warp_max(mx));
      // Until a real key is seen m stays -inf and every p is 0.
      const T alpha = m_new == neg_inf ? T(1) : exp(m[r] - m_new);
      T sum = T(0);
      const int64_t row = i0 + ty + 16 * r;
      #pragma unroll
      for (int c = 0; c < RN; ++c) {
        T p = s[r][c] == neg_inf ? T(0) : exp(s[r][c] - m_new);
        sum += p;
        if (dr.on && p != T(0))
          p *= keep_multiplier<T>(dr, dr.offset + static_cast<uint64_t>((bh * g.n + row) * g.n +
                                                                         j0 + tx + 16 * c));
        ps[(ty + 16 * r) * LP + tx + 16 * c] = p;
      }
      l[r] = l[r] * alpha + half_warp_sum(sum);
      m[r] = m_new;
      #pragma unroll
      for (int c = 0; c < RD; ++c) acc[r][c] *= alpha;
    }
    __syncthreads();
    for (int jj = 0; jj < BN; ++jj) {
      T vc[RD];
      #pragma unroll
      for (int c = 0; c < RD; ++c) vc[c] = vs[jj * DMAX + tx + 16 * c];
      #pragma unroll
      for (int r = 0; r < RM; ++r) {
        const T p = ps[(ty + 16 * r) * LP + jj];
        #pragma unroll
        for (int c = 0; c < RD; ++c) acc[r][c] += p * vc[c];
      }
    }
  }
  #pragma unroll
  for (int r = 0; r < RM; ++r) {
    const int64_t row = i0 + ty + 16 * r;
    if (row >= g.n) continue;
    const T inv = l[r] > T(0) ? T(1) / l[r] : T(0);
    #pragma unroll
    for (int c = 0; c < RD; ++c)
      if (tx + 16 * c < g.d) out[base + row * g.d + tx + 16 * c] = acc[r][c] * inv;
    if (tx == 0) lse[bh * g.n + row] = l[r] > T(0) ? m[r] + log(l[r]) : neg_inf;
  }
}

// ------------------------------------------------------------------ backward
template <typename T, int DMAX>
size_t dkdv_smem() {
  constexpr int BM = tile_rows<T>(), BN = BM, LD = DMAX + 1;
  return (2 * BN * LD + 2 * BM * LD + 2 * BN * (BM + 1) + 2 * BM) * sizeof(T);
}

template <typename T, int DMAX>
__global__ void __launch_bounds__(block_threads)
    dkdv_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                Geometry g, T scale, Dropout dr, const T* __restrict__ lse,
                const T* __restrict__ delta, const T* __restrict__ d_out, int64_t tiles,
                T* __restrict__ dk, T* __restrict__ dv) {
  constexpr int BM = tile_rows<T>(), BN = BM, RK = BN / 16, RQ = BM / 16, RD = DMAX / 16;
  constexpr int LD = DMAX + 1, LP = BM + 1;
  LRA_DYNAMIC_SHARED(smem);
  T* ks = reinterpret_cast<T*>(smem);  // [BN][LD]
  T* vs = ks + BN * LD;                // [BN][LD]
  T* qs = vs + BN * LD;                // [BM][LD]
  T* gs = qs + BM * LD;                // [BM][LD]: dO
  T* pts = gs + BM * LD;               // [BN][LP]: Pᵀ times the dropout multipliers
  T* dsts = pts + BN * LP;             // [BN][LP]: dSᵀ
  T* lses = dsts + BN * LP;            // [BM]
  T* deltas = lses + BM;               // [BM]
  const T neg_inf = -static_cast<T>(INFINITY);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t bh = blockIdx.x / tiles, j0 = (blockIdx.x % tiles) * BN, b = bh / g.heads;
  const int64_t base = bh * g.n * g.d;

  load_tile<T, BN, DMAX, LD>(k + base, j0, g.n, g.d, ks);
  load_tile<T, BN, DMAX, LD>(v + base, j0, g.n, g.d, vs);
  bool real[RK];
  #pragma unroll
  for (int r = 0; r < RK; ++r) real[r] = key_is_real(g, b, j0 + ty + 16 * r);
  T dka[RK][RD], dva[RK][RD];
  #pragma unroll
  for (int r = 0; r < RK; ++r)
    #pragma unroll
    for (int c = 0; c < RD; ++c) dka[r][c] = dva[r][c] = T(0);

  for (int64_t i0 = 0; i0 < g.n; i0 += BM) {
    __syncthreads();
    load_tile<T, BM, DMAX, LD>(q + base, i0, g.n, g.d, qs);
    load_tile<T, BM, DMAX, LD>(d_out + base, i0, g.n, g.d, gs);
    for (int ii = threadIdx.x; ii < BM; ii += block_threads) {
      const int64_t row = i0 + ii;
      lses[ii] = row < g.n ? lse[bh * g.n + row] : neg_inf;
      deltas[ii] = row < g.n ? delta[bh * g.n + row] : T(0);
    }
    __syncthreads();
    T st[RK][RQ], dpt[RK][RQ];
    #pragma unroll
    for (int r = 0; r < RK; ++r)
      #pragma unroll
      for (int c = 0; c < RQ; ++c) st[r][c] = dpt[r][c] = T(0);
    // Tiles are zero past d: a multiple of 4 lets the loop unroll.
#pragma unroll 4
    for (int e = 0; e < ((g.d + 3) & ~3); ++e) {
      T kr[RK], vr[RK], qc[RQ], gc[RQ];
      #pragma unroll
      for (int r = 0; r < RK; ++r) {
        kr[r] = ks[(ty + 16 * r) * LD + e];
        vr[r] = vs[(ty + 16 * r) * LD + e];
      }
      #pragma unroll
      for (int c = 0; c < RQ; ++c) {
        qc[c] = qs[(tx + 16 * c) * LD + e];
        gc[c] = gs[(tx + 16 * c) * LD + e];
      }
      #pragma unroll
      for (int r = 0; r < RK; ++r)
        #pragma unroll
        for (int c = 0; c < RQ; ++c) {
          st[r][c] += kr[r] * qc[c];
          dpt[r][c] += vr[r] * gc[c];
        }
    }
    #pragma unroll
    for (int r = 0; r < RK; ++r)
      #pragma unroll
      for (int c = 0; c < RQ; ++c) {
        const int qi = tx + 16 * c;
        const T l = lses[qi];
        const T p = (real[r] && l != neg_inf) ? exp(st[r][c] * scale - l) : T(0);
        T keep = T(1);
        if (dr.on && p != T(0))
          keep = keep_multiplier<T>(
              dr, dr.offset + static_cast<uint64_t>((bh * g.n + i0 + qi) * g.n + j0 + ty + 16 * r));
        pts[(ty + 16 * r) * LP + qi] = p * keep;
        dsts[(ty + 16 * r) * LP + qi] = scale * p * (dpt[r][c] * keep - deltas[qi]);
      }
    __syncthreads();
    for (int ii = 0; ii < BM; ++ii) {
      T gc[RD], qc[RD];
      #pragma unroll
      for (int c = 0; c < RD; ++c) {
        gc[c] = gs[ii * LD + tx + 16 * c];
        qc[c] = qs[ii * LD + tx + 16 * c];
      }
      #pragma unroll
      for (int r = 0; r < RK; ++r) {
        const T w = pts[(ty + 16 * r) * LP + ii], ds = dsts[(ty + 16 * r) * LP + ii];
        #pragma unroll
        for (int c = 0; c < RD; ++c) {
          dva[r][c] += w * gc[c];
          dka[r][c] += ds * qc[c];
        }
      }
    }
  }
  #pragma unroll
  for (int r = 0; r < RK; ++r) {
    const int64_t key = j0 + ty + 16 * r;
    if (key >= g.n) continue;
    #pragma unroll
    for (int c = 0; c < RD; ++c)
      if (tx + 16 * c < g.d) {
        dk[base + key * g.d + tx + 16 * c] = dka[r][c];
        dv[base + key * g.d + tx + 16 * c] = dva[r][c];
      }
  }
}

template <typename T, int DMAX>
size_t dq_smem() {
  constexpr int BM = tile_rows<T>(), BN = BM, LD = DMAX + 1;
  return (2 * BM * LD + 2 * BN * LD + BM * (BN + 1)) * sizeof(T) + BN;
}

template <typename T, int DMAX>
__global__ void __launch_bounds__(block_threads)
    dq_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, Geometry g,
              T scale, Dropout dr, const T* __restrict__ lse, const T* __restrict__ delta,
              const T* __restrict__ d_out, int64_t tiles, T* __restrict__ dq) {
  constexpr int BM = tile_rows<T>(), BN = BM, RM = BM / 16, RN = BN / 16, RD = DMAX / 16;
  constexpr int LD = DMAX + 1, LP = BN + 1;
  LRA_DYNAMIC_SHARED(smem);
  T* qs = reinterpret_cast<T*>(smem);  // [BM][LD]
  T* gs = qs + BM * LD;                // [BM][LD]: dO
  T* ks = gs + BM * LD;                // [BN][LD]
  T* vs = ks + BN * LD;                // [BN][LD]
  T* dss = vs + BN * LD;               // [BM][LP]
  unsigned char* real = reinterpret_cast<unsigned char*>(dss + BM * LP);  // [BN]
  const T neg_inf = -static_cast<T>(INFINITY);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t bh = blockIdx.x / tiles, i0 = (blockIdx.x % tiles) * BM, b = bh / g.heads;
  const int64_t base = bh * g.n * g.d;

  load_tile<T, BM, DMAX, LD>(q + base, i0, g.n, g.d, qs);
  load_tile<T, BM, DMAX, LD>(d_out + base, i0, g.n, g.d, gs);
  T my_lse[RM], my_delta[RM], dqa[RM][RD];
  #pragma unroll
  for (int r = 0; r < RM; ++r) {
    const int64_t row = i0 + ty + 16 * r;
    my_lse[r] = row < g.n ? lse[bh * g.n + row] : neg_inf;
    my_delta[r] = row < g.n ? delta[bh * g.n + row] : T(0);
    #pragma unroll
    for (int c = 0; c < RD; ++c) dqa[r][c] = T(0);
  }
  for (int64_t j0 = 0; j0 < g.n; j0 += BN) {
    __syncthreads();
    load_tile<T, BN, DMAX, LD>(k + base, j0, g.n, g.d, ks);
    load_tile<T, BN, DMAX, LD>(v + base, j0, g.n, g.d, vs);
    for (int jj = threadIdx.x; jj < BN; jj += block_threads) real[jj] = key_is_real(g, b, j0 + jj);
    __syncthreads();
    T s[RM][RN], dp[RM][RN];
    #pragma unroll
    for (int r = 0; r < RM; ++r)
      #pragma unroll
      for (int c = 0; c < RN; ++c) s[r][c] = dp[r][c] = T(0);
    // Tiles are zero past d: a multiple of 4 lets the loop unroll.
#pragma unroll 4
    for (int e = 0; e < ((g.d + 3) & ~3); ++e) {
      T qr[RM], gr[RM], kc[RN], vc[RN];
      #pragma unroll
      for (int r = 0; r < RM; ++r) {
        qr[r] = qs[(ty + 16 * r) * LD + e];
        gr[r] = gs[(ty + 16 * r) * LD + e];
      }
      #pragma unroll
      for (int c = 0; c < RN; ++c) {
        kc[c] = ks[(tx + 16 * c) * LD + e];
        vc[c] = vs[(tx + 16 * c) * LD + e];
      }
      #pragma unroll
      for (int r = 0; r < RM; ++r)
        #pragma unroll
        for (int c = 0; c < RN; ++c) {
          s[r][c] += qr[r] * kc[c];
          dp[r][c] += gr[r] * vc[c];
        }
    }
    #pragma unroll
    for (int r = 0; r < RM; ++r)
      #pragma unroll
      for (int c = 0; c < RN; ++c) {
        const int kj = tx + 16 * c;
        const T p = (real[kj] && my_lse[r] != neg_inf) ? exp(s[r][c] * scale - my_lse[r]) : T(0);
        T keep = T(1);
        if (dr.on && p != T(0))
          keep = keep_multiplier<T>(
              dr, dr.offset + static_cast<uint64_t>((bh * g.n + i0 + ty + 16 * r) * g.n + j0 + kj));
        dss[(ty + 16 * r) * LP + kj] = scale * p * (dp[r][c] * keep - my_delta[r]);
      }
    __syncthreads();
    for (int jj = 0; jj < BN; ++jj) {
      T kc[RD];
      #pragma unroll
      for (int c = 0; c < RD; ++c) kc[c] = ks[jj * LD + tx + 16 * c];
      #pragma unroll
      for (int r = 0; r < RM; ++r) {
        const T ds = dss[(ty + 16 * r) * LP + jj];
        #pragma unroll
        for (int c = 0; c < RD; ++c) dqa[r][c] += ds * kc[c];
      }
    }
  }
  #pragma unroll
  for (int r = 0; r < RM; ++r) {
    const int64_t row = i0 + ty + 16 * r;
    if (row >= g.n) continue;
    #pragma unroll
    for (int c = 0; c < RD; ++c)
      if (tx + 16 * c < g.d) dq[base + row * g.d + tx + 16 * c] = dqa[r][c];
  }
}

}  // namespace lra::core::cuda::flash
