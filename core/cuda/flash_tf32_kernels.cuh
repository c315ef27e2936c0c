// Flash-style softmax attention on tensor cores (TF32 products, fp32 accumulation and fp32
// softmax), for f32 tensors when the matmul precision is TF32 (core/precision.h). Same
// semantics as the kernels of fused_attention_kernels.cuh: key mask, -inf log-sum-exp
// without real keys, dropout with the CPU's draws, dK/dV and dQ in separate kernels (no
// atomics). The backward kernels below follow the same plan as this forward; the softmax
// arithmetic on the fragments is shared with the bf16 kernels (flash_fragments.cuh).
//
// 128 threads = 4 warps; a block owns 64 query rows, 16 per warp, and streams 64-key tiles
// of K and V through shared memory. Per warp and key tile: S (16 x 64) = Q Kᵀ as
// 8 x (D / 8) mma.m16n8k8, the online softmax on S's accumulator fragments (a row's values
// sit in one quad of lanes: two shuffles per reduction), then O += P V with P's accumulator
// fragments used directly as A fragments: within each 8 keys, A's k = t is taken as key 2t
// and k = t + 4 as key 2t + 1 (the C layout), and V's rows are read in that order. Q's
// fragments stay in registers for the whole block. Rows of K and V in shared memory are
// D + 4 floats apart, so every fragment read hits 32 distinct banks, and rounded to TF32
// as they are loaded, so the fragments need no conversion.
//
// Device code only (launched from fused_attention.cu; the CPU emulation test runs it too).
#pragma once
#include <cstdint>

#include "core/cuda/flash_fragments.cuh"
#include "core/cuda/fused_attention_kernels.cuh"
#include "core/cuda/mma_tf32.cuh"

namespace lra::core::cuda::flash {

struct alignas(16) Float4 {
  float x, y, z, w;
};

template <int DMAX> size_t forward_tf32_smem() {
  return 2 * mma_keys * (DMAX + 4) * sizeof(float) + mma_keys;
}

// Rows [r0, r0 + 64) of one (batch, head)'s [N, d] matrix into a [64][LD] tile, zero-padded,
// rounded to TF32 on the way in (every fragment read from it is then a bit copy). Four
// neighbours per 16-byte load where the rows allow it (d % 4 == 0, src 16-byte aligned:
// then every row starts aligned too), else one float per load.
template <int DMAX>
__device__ inline void load_tf32_tile(const float* __restrict__ src, int64_t r0, const Geometry& g,
                                      float* tile) {
  constexpr int LD = DMAX + 4;
  if (g.d % 4 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0) {
    for (int idx = threadIdx.x; idx < mma_keys * DMAX / 4; idx += mma_threads) {
      const int r = idx / (DMAX / 4), c = idx % (DMAX / 4) * 4;
      const int64_t row = r0 + r;
      Float4 x{0.0f, 0.0f, 0.0f, 0.0f};
      if (row < g.n && c < g.d) x = *reinterpret_cast<const Float4*>(src + row * g.d + c);
      *reinterpret_cast<Float4*>(tile + r * LD + c) =
          Float4{round_tf32(x.x), round_tf32(x.y), round_tf32(x.z), round_tf32(x.w)};
    }
    return;
  }
  for (int idx = threadIdx.x; idx < mma_keys * DMAX; idx += mma_threads) {
    const int r = idx / DMAX, c = idx % DMAX;
    const int64_t row = r0 + r;
    tile[r * LD + c] = (row < g.n && c < g.d) ? round_tf32(src[row * g.d + c]) : 0.0f;
  }
}

__device__ inline float q_element(const float* q, int64_t base, const Geometry& g, int64_t row,
                                  int col) {
  return (row < g.n && col < g.d) ? q[base + row * g.d + col] : 0.0f;
}

template <int DMAX>
__global__ void __launch_bounds__(mma_threads)
    forward_tf32_kernel(const float* __restrict__ q, const float* __restrict__ k,
                        const float* __restrict__ v, Geometry g, float scale, Dropout dr,
                        int64_t tiles, float* __restrict__ out, float* __restrict__ lse) {
  constexpr int LD = DMAX + 4;
  constexpr int KS = DMAX / 8;       // k-steps of Q Kᵀ over the head dim
  constexpr int NT = mma_col_tiles;  // 8-key column tiles of S
  constexpr int DT = DMAX / 8;       // 8-wide column tiles of O
  LRA_DYNAMIC_SHARED(smem);
  float* ks = reinterpret_cast<float*>(smem);  // [64][LD]
  float* vs = ks + mma_keys * LD;              // [64][LD]
  unsigned char* real = reinterpret_cast<unsigned char*>(vs + mma_keys * LD);  // [64]
  const float neg_inf = -INFINITY;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane / 4, tq = lane % 4;
  const int64_t bh = blockIdx.x / tiles, i0 = (blockIdx.x % tiles) * mma_rows, b = bh / g.heads;
  const int64_t base = bh * g.n * g.d;
  const int64_t rows[2] = {i0 + warp * 16 + gq, i0 + warp * 16 + gq + 8};

  uint32_t qa[KS][4];
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) {
    qa[kk][0] = to_tf32(q_element(q, base, g, rows[0], kk * 8 + tq));
    qa[kk][1] = to_tf32(q_element(q, base, g, rows[1], kk * 8 + tq));
    qa[kk][2] = to_tf32(q_element(q, base, g, rows[0], kk * 8 + tq + 4));
    qa[kk][3] = to_tf32(q_element(q, base, g, rows[1], kk * 8 + tq + 4));
  }
  float m[2] = {neg_inf, neg_inf}, l[2] = {0.0f, 0.0f};  // l: this lane's share of the sum
  float o[DT][4];
#pragma unroll
  for (int dt = 0; dt < DT; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[dt][e] = 0.0f;

  for (int64_t j0 = 0; j0 < g.n; j0 += mma_keys) {
    __syncthreads();  // the previous tile's readers are done
    load_tf32_tile<DMAX>(k + base, j0, g, ks);
    load_tf32_tile<DMAX>(v + base, j0, g, vs);
    for (int jj = threadIdx.x; jj < mma_keys; jj += mma_threads) real[jj] = key_is_real(g, b, j0 + jj);
    __syncthreads();

    float s[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < KS; ++kk)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const float* krow = ks + (nt * 8 + gq) * LD + kk * 8 + tq;
        const uint32_t bf[2] = {tf32_bits(krow[0]), tf32_bits(krow[4])};
        mma_tf32(s[nt], qa[kk], bf);
      }

    float alpha[2];
    online_softmax_step(s, real, scale, dr, g, bh, rows, j0, m, l, alpha);
#pragma unroll
    for (int dt = 0; dt < DT; ++dt) {
      o[dt][0] *= alpha[0];
      o[dt][1] *= alpha[0];
      o[dt][2] *= alpha[1];
      o[dt][3] *= alpha[1];
    }
    // O += P V, keys permuted within each 8 as the header says.
#pragma unroll
    for (int kt = 0; kt < NT; ++kt) {
      const uint32_t pa[4] = {to_tf32(s[kt][0]), to_tf32(s[kt][2]), to_tf32(s[kt][1]),
                              to_tf32(s[kt][3])};
      const float* v0 = vs + (kt * 8 + 2 * tq) * LD + gq;
#pragma unroll
      for (int dt = 0; dt < DT; ++dt) {
        const uint32_t bf[2] = {tf32_bits(v0[dt * 8]), tf32_bits(v0[LD + dt * 8])};
        mma_tf32(o[dt], pa, bf);
      }
    }
  }

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float row_lse;
    const float inv = finish_row(m[h], l[h], row_lse);
    if (rows[h] >= g.n) continue;
    float* orow = out + base + rows[h] * g.d;
#pragma unroll
    for (int dt = 0; dt < DT; ++dt) {
      const int col = dt * 8 + 2 * tq;
      if (col < g.d) orow[col] = o[dt][2 * h] * inv;
      if (col + 1 < g.d) orow[col + 1] = o[dt][2 * h + 1] * inv;
    }
    if (tq == 0) lse[bh * g.n + rows[h]] = row_lse;
  }
}

// ------------------------------------------------------------------ backward
// Both kernels: 4 warps of 16 rows (keys for dK/dV, queries for dQ) against 64-wide tiles
// of the other side, tiles in shared memory with rows D + 4 floats apart.
template <int DMAX> size_t backward_tf32_smem() {
  return 4 * mma_keys * (DMAX + 4) * sizeof(float) + 2 * mma_keys * sizeof(float) + mma_keys;
}

// acc[nt] += A (the warp's 16 rows of `a`, all of the head dim) times Bᵀ, B = 64 rows of `b`:
// the product of two row-major tiles against the head dim (S = Q Kᵀ, dP = dO Vᵀ, ...).
template <int DMAX>
__device__ inline void rows_times_rows(const float* a, const float* b, float (&acc)[mma_keys / 8][4]) {
  constexpr int LD = DMAX + 4;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane / 4, tq = lane % 4;
  const float* a0 = a + (warp * 16 + gq) * LD + tq;
#pragma unroll
  for (int kk = 0; kk < DMAX / 8; ++kk) {
    const uint32_t af[4] = {tf32_bits(a0[kk * 8]), tf32_bits(a0[8 * LD + kk * 8]),
                            tf32_bits(a0[kk * 8 + 4]), tf32_bits(a0[8 * LD + kk * 8 + 4])};
#pragma unroll
    for (int nt = 0; nt < mma_keys / 8; ++nt) {
      const float* brow = b + (nt * 8 + gq) * LD + kk * 8 + tq;
      const uint32_t bf[2] = {tf32_bits(brow[0]), tf32_bits(brow[4])};
      mma_tf32(acc[nt], af, bf);
    }
  }
}

// out[dt] += X (16 x 64, accumulator fragments, columns permuted within each 8 as the
// forward's P) times the 64 x D tile `b`.
template <int DMAX>
__device__ inline void fragments_times_tile(const float (&x)[mma_keys / 8][4], const float* b,
                                            float (&out)[DMAX / 8][4]) {
  constexpr int LD = DMAX + 4;
  const int lane = threadIdx.x % 32, gq = lane / 4, tq = lane % 4;
#pragma unroll
  for (int kt = 0; kt < mma_keys / 8; ++kt) {
    const uint32_t xa[4] = {to_tf32(x[kt][0]), to_tf32(x[kt][2]), to_tf32(x[kt][1]),
                            to_tf32(x[kt][3])};
    const float* b0 = b + (kt * 8 + 2 * tq) * LD + gq;
#pragma unroll
    for (int dt = 0; dt < DMAX / 8; ++dt) {
      const uint32_t bf[2] = {tf32_bits(b0[dt * 8]), tf32_bits(b0[LD + dt * 8])};
      mma_tf32(out[dt], xa, bf);
    }
  }
}

// One block per 64-key tile: dV = Σ Wᵀ dO, dK = Σ dSᵀ Q over the query tiles, with Sᵀ = K Qᵀ
// and dPᵀ = V dOᵀ (keys are the rows of every fragment here).
template <int DMAX>
__global__ void __launch_bounds__(mma_threads)
    dkdv_tf32_kernel(const float* __restrict__ q, const float* __restrict__ k,
                     const float* __restrict__ v, Geometry g, float scale, Dropout dr,
                     const float* __restrict__ lse, const float* __restrict__ delta,
                     const float* __restrict__ d_out, int64_t tiles, float* __restrict__ dk,
                     float* __restrict__ dv) {
  constexpr int LD = DMAX + 4, NT = mma_keys / 8, DT = DMAX / 8;
  LRA_DYNAMIC_SHARED(smem);
  float* ks = reinterpret_cast<float*>(smem);  // [64][LD]
  float* vs = ks + mma_keys * LD;
  float* qs = vs + mma_keys * LD;
  float* gs = qs + mma_keys * LD;  // dO
  float* lses = gs + mma_keys * LD;
  float* deltas = lses + mma_keys;
  const float neg_inf = -INFINITY;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane / 4, tq = lane % 4;
  const int64_t bh = blockIdx.x / tiles, j0 = (blockIdx.x % tiles) * mma_keys, b = bh / g.heads;
  const int64_t base = bh * g.n * g.d;
  const int64_t keys[2] = {j0 + warp * 16 + gq, j0 + warp * 16 + gq + 8};
  const bool real[2] = {key_is_real(g, b, keys[0]), key_is_real(g, b, keys[1])};

  load_tf32_tile<DMAX>(k + base, j0, g, ks);
  load_tf32_tile<DMAX>(v + base, j0, g, vs);
  float dka[DT][4], dva[DT][4];
#pragma unroll
  for (int dt = 0; dt < DT; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) dka[dt][e] = dva[dt][e] = 0.0f;

  for (int64_t i0 = 0; i0 < g.n; i0 += mma_keys) {
    __syncthreads();
    load_tf32_tile<DMAX>(q + base, i0, g, qs);
    load_tf32_tile<DMAX>(d_out + base, i0, g, gs);
    for (int ii = threadIdx.x; ii < mma_keys; ii += mma_threads) {
      const int64_t row = i0 + ii;
      lses[ii] = row < g.n ? lse[bh * g.n + row] : neg_inf;
      deltas[ii] = row < g.n ? delta[bh * g.n + row] : 0.0f;
    }
    __syncthreads();
    float st[NT][4], dpt[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) st[nt][e] = dpt[nt][e] = 0.0f;
    rows_times_rows<DMAX>(ks, qs, st);
    rows_times_rows<DMAX>(vs, gs, dpt);
    key_side_weights(st, dpt, lses, deltas, real, scale, dr, g, bh, i0, keys);
    fragments_times_tile<DMAX>(st, gs, dva);
    fragments_times_tile<DMAX>(dpt, qs, dka);
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (keys[h] >= g.n) continue;
#pragma unroll
    for (int dt = 0; dt < DT; ++dt) {
      const int col = dt * 8 + 2 * tq;
      float* krow = dk + base + keys[h] * g.d;
      float* vrow = dv + base + keys[h] * g.d;
      if (col < g.d) {
        krow[col] = dka[dt][2 * h];
        vrow[col] = dva[dt][2 * h];
      }
      if (col + 1 < g.d) {
        krow[col + 1] = dka[dt][2 * h + 1];
        vrow[col + 1] = dva[dt][2 * h + 1];
      }
    }
  }
}

// One block per 64-query tile: dQ = Σ dS K over the key tiles, S = Q Kᵀ, dP = dO Vᵀ.
template <int DMAX>
__global__ void __launch_bounds__(mma_threads)
    dq_tf32_kernel(const float* __restrict__ q, const float* __restrict__ k,
                   const float* __restrict__ v, Geometry g, float scale, Dropout dr,
                   const float* __restrict__ lse, const float* __restrict__ delta,
                   const float* __restrict__ d_out, int64_t tiles, float* __restrict__ dq) {
  constexpr int LD = DMAX + 4, NT = mma_keys / 8, DT = DMAX / 8;
  LRA_DYNAMIC_SHARED(smem);
  float* qs = reinterpret_cast<float*>(smem);  // [64][LD]
  float* gs = qs + mma_keys * LD;             // dO
  float* ks = gs + mma_keys * LD;
  float* vs = ks + mma_keys * LD;
  unsigned char* real = reinterpret_cast<unsigned char*>(vs + mma_keys * LD + 2 * mma_keys);
  const float neg_inf = -INFINITY;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane / 4, tq = lane % 4;
  const int64_t bh = blockIdx.x / tiles, i0 = (blockIdx.x % tiles) * mma_rows, b = bh / g.heads;
  const int64_t base = bh * g.n * g.d;
  const int64_t rows[2] = {i0 + warp * 16 + gq, i0 + warp * 16 + gq + 8};
  float my_lse[2], my_delta[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    my_lse[h] = rows[h] < g.n ? lse[bh * g.n + rows[h]] : neg_inf;
    my_delta[h] = rows[h] < g.n ? delta[bh * g.n + rows[h]] : 0.0f;
  }
  load_tf32_tile<DMAX>(q + base, i0, g, qs);
  load_tf32_tile<DMAX>(d_out + base, i0, g, gs);
  float dqa[DT][4];
#pragma unroll
  for (int dt = 0; dt < DT; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) dqa[dt][e] = 0.0f;

  for (int64_t j0 = 0; j0 < g.n; j0 += mma_keys) {
    __syncthreads();
    load_tf32_tile<DMAX>(k + base, j0, g, ks);
    load_tf32_tile<DMAX>(v + base, j0, g, vs);
    for (int jj = threadIdx.x; jj < mma_keys; jj += mma_threads) real[jj] = key_is_real(g, b, j0 + jj);
    __syncthreads();
    float s[NT][4], dp[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] = dp[nt][e] = 0.0f;
    rows_times_rows<DMAX>(qs, ks, s);
    rows_times_rows<DMAX>(gs, vs, dp);
    query_side_ds(s, dp, real, my_lse, my_delta, scale, dr, g, bh, rows, j0);
    fragments_times_tile<DMAX>(s, ks, dqa);
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (rows[h] >= g.n) continue;
    float* row = dq + base + rows[h] * g.d;
#pragma unroll
    for (int dt = 0; dt < DT; ++dt) {
      const int col = dt * 8 + 2 * tq;
      if (col < g.d) row[col] = dqa[dt][2 * h];
      if (col + 1 < g.d) row[col + 1] = dqa[dt][2 * h + 1];
    }
  }
}

}  // namespace lra::core::cuda::flash
