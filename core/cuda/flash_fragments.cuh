// The softmax arithmetic of the tensor-core flash kernels (flash_tf32_kernels.cuh,
// flash_bf16_kernels.cuh), on accumulator fragments. Both kernels use the same plan: 128
// threads = 4 warps, a warp owns 16 rows (queries, or keys in the dK/dV kernel) against a
// 64-wide tile of the other side, held as 8 m16n8 accumulator fragments whose layout is the
// same for TF32 and bf16 products: element e of fragment nt sits in row g (e < 2) or g + 8
// (e >= 2) of the warp's 16 and column nt * 8 + 2t + e % 2, with g = lane / 4, t = lane % 4.
// A row's 64 values are spread over the 4 lanes of one quad: two shuffles reduce a row.
//
// Device code only (the CPU emulation test runs it too).
#pragma once
#include <cstdint>

#include "core/cuda/fused_attention_kernels.cuh"

namespace lra::core::cuda::flash {

constexpr int mma_threads = 128;
constexpr int mma_rows = 64;  // rows per block: 16 per warp
constexpr int mma_keys = 64;  // columns per streamed tile
constexpr int mma_col_tiles = mma_keys / 8;

using TileFragments = float[mma_col_tiles][4];

__device__ inline int fragment_column(int nt, int e) {
  return nt * 8 + 2 * (static_cast<int>(threadIdx.x) % 4) + (e & 1);
}

__device__ inline void zero(TileFragments& x) {
#pragma unroll
  for (int nt = 0; nt < mma_col_tiles; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) x[nt][e] = 0.0f;
}

// One step of the forward's online softmax. s holds Q Kᵀ for the key tile at j0 (real[c]:
// key j0 + c exists and is not padding). On return s holds the weights p = exp(scale s - m)
// (times the dropout multiplier), m the running row maxima, l this lane's share of the
// running sums (of p before dropout), alpha the factor for the accumulators of earlier tiles.
__device__ inline void online_softmax_step(TileFragments& s, const unsigned char* real,
                                           float scale, const Dropout& dr, const Geometry& g,
                                           int64_t bh, const int64_t (&rows)[2], int64_t j0,
                                           float (&m)[2], float (&l)[2], float (&alpha)[2]) {
  const float neg_inf = -INFINITY;
  float mx[2] = {neg_inf, neg_inf};
#pragma unroll
  for (int nt = 0; nt < mma_col_tiles; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      s[nt][e] = real[fragment_column(nt, e)] ? s[nt][e] * scale : neg_inf;
      mx[e >> 1] = fmaxf(mx[e >> 1], s[nt][e]);
    }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
    mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
    const float m_new = fmaxf(m[h], mx[h]);
    alpha[h] = m_new == neg_inf ? 1.0f : expf(m[h] - m_new);  // no real key yet: all p are 0
    m[h] = m_new;
    l[h] *= alpha[h];
  }
#pragma unroll
  for (int nt = 0; nt < mma_col_tiles; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int h = e >> 1;
      float p = s[nt][e] == neg_inf ? 0.0f : expf(s[nt][e] - m[h]);
      l[h] += p;
      if (dr.on && p != 0.0f)
        p *= keep_multiplier<float>(
            dr, dr.offset + static_cast<uint64_t>((bh * g.n + rows[h]) * g.n + j0 +
                                                  fragment_column(nt, e)));
      s[nt][e] = p;
    }
}

// The forward's end for one row half h: the row's full sum over its quad, and 1 / sum
// (0 for a row without real keys). lse_out gets m + log(sum), -inf without real keys.
__device__ inline float finish_row(float m, float& l, float& lse_out) {
  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);
  lse_out = l > 0.0f ? m + logf(l) : -INFINITY;
  return l > 0.0f ? 1.0f / l : 0.0f;
}

// dK/dV kernel, query tile at i0 against the warp's keys: st = K Qᵀ, dpt = V dOᵀ on entry;
// on return st = Wᵀ (the weights after dropout) and dpt = dSᵀ = scale P (dP keep - delta).
__device__ inline void key_side_weights(TileFragments& st, TileFragments& dpt, const float* lses,
                                        const float* deltas, const bool (&real)[2], float scale,
                                        const Dropout& dr, const Geometry& g, int64_t bh,
                                        int64_t i0, const int64_t (&keys)[2]) {
  const float neg_inf = -INFINITY;
#pragma unroll
  for (int nt = 0; nt < mma_col_tiles; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int qi = fragment_column(nt, e);
      const float l = lses[qi];
      const float p = (real[e >> 1] && l != neg_inf) ? expf(st[nt][e] * scale - l) : 0.0f;
      float keep = 1.0f;
      if (dr.on && p != 0.0f)
        keep = keep_multiplier<float>(
            dr, dr.offset + static_cast<uint64_t>((bh * g.n + i0 + qi) * g.n + keys[e >> 1]));
      st[nt][e] = p * keep;
      dpt[nt][e] = scale * p * (dpt[nt][e] * keep - deltas[qi]);
    }
}

// dQ kernel, key tile at j0 against the warp's queries: s = Q Kᵀ, dp = dO Vᵀ on entry; on
// return s = dS.
__device__ inline void query_side_ds(TileFragments& s, const TileFragments& dp,
                                     const unsigned char* real, const float (&lse)[2],
                                     const float (&delta)[2], float scale, const Dropout& dr,
                                     const Geometry& g, int64_t bh, const int64_t (&rows)[2],
                                     int64_t j0) {
  const float neg_inf = -INFINITY;
#pragma unroll
  for (int nt = 0; nt < mma_col_tiles; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int h = e >> 1, kj = fragment_column(nt, e);
      const float p = (real[kj] && lse[h] != neg_inf) ? expf(s[nt][e] * scale - lse[h]) : 0.0f;
      float keep = 1.0f;
      if (dr.on && p != 0.0f)
        keep = keep_multiplier<float>(
            dr, dr.offset + static_cast<uint64_t>((bh * g.n + rows[h]) * g.n + j0 + kj));
      s[nt][e] = scale * p * (dp[nt][e] * keep - delta[h]);
    }
}

}  // namespace lra::core::cuda::flash
