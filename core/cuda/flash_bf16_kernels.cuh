// Flash-style softmax attention on tensor cores for bf16 tensors: bf16 storage of Q, K, V,
// dO, O and the gradients; bf16 products (mma.m16n8k16) with fp32 accumulation; the softmax,
// lse and delta in fp32. Same semantics and plan as flash_tf32_kernels.cuh (128 threads,
// 16 rows per warp, 64-wide tiles, the softmax arithmetic of flash_fragments.cuh); what
// differs is the products:
//   - an m16n8k16 A fragment is two C fragments side by side, packed pairwise, so the
//     weights P (and dS, Wᵀ, dSᵀ) feed the next product in their natural order, rounded to
//     bf16 as they are packed (the softmax sums use the unrounded fp32 values);
//   - the operand that is the k x n side with k along the tile's rows (V in P V, dO in
//     Wᵀ dO, Q in dSᵀ Q, K in dS K) is stored transposed as well ([DMAX][64 + 8]), so each
//     B register is one 32-bit shared-memory read of two neighbours.
// Row-major tiles have rows DMAX + 8 bf16 apart and transposed ones 64 + 8: every fragment
// read of a warp then hits 32 distinct banks.
//
// Device code only (launched from fused_attention.cu; the CPU emulation test runs it too).
#pragma once
#include <cstdint>

#include "core/bfloat16.h"
#include "core/cuda/flash_fragments.cuh"
#include "core/cuda/fused_attention_kernels.cuh"
#include "core/cuda/mma_bf16.cuh"

namespace lra::core::cuda::flash {

template <int DMAX> constexpr int bf16_row_ld() { return DMAX + 8; }
constexpr int bf16_col_ld = mma_keys + 8;

template <int DMAX> constexpr size_t bf16_row_tile_bytes() {
  return size_t{mma_keys} * bf16_row_ld<DMAX>() * sizeof(bf16);
}
template <int DMAX> constexpr size_t bf16_col_tile_bytes() {
  return size_t{DMAX} * bf16_col_ld * sizeof(bf16);
}

// Shared memory: forward K, Vᵀ and the key flags; dK/dV K, V, Q, dO, Qᵀ, dOᵀ and the lse and
// delta of the query tile; dQ Q, dO, K, V, Kᵀ and the key flags.
template <int DMAX> size_t forward_bf16_smem() {
  return bf16_row_tile_bytes<DMAX>() + bf16_col_tile_bytes<DMAX>() + mma_keys;
}
template <int DMAX> size_t dkdv_bf16_smem() {
  return 4 * bf16_row_tile_bytes<DMAX>() + 2 * bf16_col_tile_bytes<DMAX>() +
         2 * mma_keys * sizeof(float);
}
template <int DMAX> size_t dq_bf16_smem() {
  return 4 * bf16_row_tile_bytes<DMAX>() + bf16_col_tile_bytes<DMAX>() + mma_keys;
}

// Two neighbouring bf16 of a shared tile as one register (the lower index in the low half).
__device__ inline uint32_t pair_at(const bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }

struct alignas(8) Bf16x4 {
  bf16 v[4];
};

// Rows [r0, r0 + 64) of one (batch, head)'s [N, d] matrix into a row-major tile (when `rows`
// is not null) and a transposed one (when `cols` is not null); zero past N and d. Four
// neighbours per 8-byte load where the rows allow it (d % 4 == 0, src 8-byte aligned: then
// every row starts aligned too), else one element per load.
template <int DMAX>
__device__ inline void load_bf16_tile(const bf16* __restrict__ src, int64_t r0, const Geometry& g,
                                      bf16* rows, bf16* cols) {
  constexpr int LD = bf16_row_ld<DMAX>();
  if (g.d % 4 == 0 && reinterpret_cast<uintptr_t>(src) % 8 == 0) {
    for (int idx = threadIdx.x; idx < mma_keys * DMAX / 4; idx += mma_threads) {
      const int r = idx / (DMAX / 4), c = idx % (DMAX / 4) * 4;
      const int64_t row = r0 + r;
      Bf16x4 x{};
      if (row < g.n && c < g.d) x = *reinterpret_cast<const Bf16x4*>(src + row * g.d + c);
      if (rows) *reinterpret_cast<Bf16x4*>(rows + r * LD + c) = x;
      if (cols)
#pragma unroll
        for (int e = 0; e < 4; ++e) cols[(c + e) * bf16_col_ld + r] = x.v[e];
    }
    return;
  }
  for (int idx = threadIdx.x; idx < mma_keys * DMAX; idx += mma_threads) {
    const int r = idx / DMAX, c = idx % DMAX;
    const int64_t row = r0 + r;
    const bf16 x = (row < g.n && c < g.d) ? src[row * g.d + c] : bf16{};
    if (rows) rows[r * LD + c] = x;
    if (cols) cols[c * bf16_col_ld + r] = x;
  }
}

// acc[nt] += A Bᵀ over the head dim, A = the warp's 16 rows of tile `a`, B = the 64 rows of
// tile `b` (both row-major): S = Q Kᵀ, dP = dO Vᵀ, Sᵀ = K Qᵀ, dPᵀ = V dOᵀ.
template <int DMAX>
__device__ inline void bf16_rows_times_rows(const bf16* a, const bf16* b, TileFragments& acc) {
  constexpr int LD = bf16_row_ld<DMAX>();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane / 4, tq = lane % 4;
  const bf16* a0 = a + (warp * 16 + gq) * LD + 2 * tq;
#pragma unroll
  for (int kk = 0; kk < DMAX / 16; ++kk) {
    const uint32_t af[4] = {pair_at(a0 + kk * 16), pair_at(a0 + 8 * LD + kk * 16),
                            pair_at(a0 + kk * 16 + 8), pair_at(a0 + 8 * LD + kk * 16 + 8)};
#pragma unroll
    for (int nt = 0; nt < mma_col_tiles; ++nt) {
      const bf16* brow = b + (nt * 8 + gq) * LD + kk * 16 + 2 * tq;
      const uint32_t bf[2] = {pair_at(brow), pair_at(brow + 8)};
      mma_bf16(acc[nt], af, bf);
    }
  }
}

// out[dt] += X B, X = the warp's 16 x 64 accumulator fragments (rounded to bf16 here), B the
// 64 x DMAX operand given by its transposed tile bt ([DMAX][64 + 8]).
template <int DMAX>
__device__ inline void bf16_fragments_times_tile(const TileFragments& x, const bf16* bt,
                                                 float (&out)[DMAX / 8][4]) {
  const int lane = threadIdx.x % 32, gq = lane / 4, tq = lane % 4;
#pragma unroll
  for (int kt = 0; kt < mma_keys / 16; ++kt) {
    const uint32_t xa[4] = {pack_bf16x2(x[2 * kt][0], x[2 * kt][1]),
                            pack_bf16x2(x[2 * kt][2], x[2 * kt][3]),
                            pack_bf16x2(x[2 * kt + 1][0], x[2 * kt + 1][1]),
                            pack_bf16x2(x[2 * kt + 1][2], x[2 * kt + 1][3])};
    const bf16* b0 = bt + gq * bf16_col_ld + kt * 16 + 2 * tq;
#pragma unroll
    for (int dt = 0; dt < DMAX / 8; ++dt) {
      const uint32_t bf[2] = {pair_at(b0 + dt * 8 * bf16_col_ld),
                              pair_at(b0 + dt * 8 * bf16_col_ld + 8)};
      mma_bf16(out[dt], xa, bf);
    }
  }
}

// Writes the two rows of accumulator fragments acc (the warp's rows `rows`, times `factor`
// per row half) to a bf16 [N, d] matrix.
template <int DMAX>
__device__ inline void store_bf16_rows(const float (&acc)[DMAX / 8][4], const int64_t (&rows)[2],
                                       const float (&factor)[2], const Geometry& g, bf16* dst) {
  const int tq = threadIdx.x % 4;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (rows[h] >= g.n) continue;
    bf16* row = dst + rows[h] * g.d;
#pragma unroll
    for (int dt = 0; dt < DMAX / 8; ++dt) {
      const int col = dt * 8 + 2 * tq;
      if (col < g.d) row[col] = to_bf16(acc[dt][2 * h] * factor[h]);
      if (col + 1 < g.d) row[col + 1] = to_bf16(acc[dt][2 * h + 1] * factor[h]);
    }
  }
}

template <int DMAX> __device__ inline void zero_rows(float (&acc)[DMAX / 8][4]) {
#pragma unroll
  for (int dt = 0; dt < DMAX / 8; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[dt][e] = 0.0f;
}

template <int DMAX>
__global__ void __launch_bounds__(mma_threads)
    forward_bf16_kernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                        const bf16* __restrict__ v, Geometry g, float scale, Dropout dr,
                        int64_t tiles, bf16* __restrict__ out, float* __restrict__ lse) {
  constexpr int LD = bf16_row_ld<DMAX>();
  LRA_DYNAMIC_SHARED(smem);
  bf16* ks = reinterpret_cast<bf16*>(smem);                          // [64][LD]
  bf16* vt = ks + mma_keys * LD;                                     // [DMAX][64 + 8]
  unsigned char* real = reinterpret_cast<unsigned char*>(vt + DMAX * bf16_col_ld);  // [64]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane / 4, tq = lane % 4;
  const int64_t bh = blockIdx.x / tiles, i0 = (blockIdx.x % tiles) * mma_rows, b = bh / g.heads;
  const int64_t base = bh * g.n * g.d;
  const int64_t rows[2] = {i0 + warp * 16 + gq, i0 + warp * 16 + gq + 8};

  // The warp's Q rows as A fragments, kept in registers for the whole block.
  auto q_at = [&](int h, int col) {
    return (rows[h] < g.n && col < g.d) ? q[base + rows[h] * g.d + col] : bf16{};
  };
  uint32_t qa[DMAX / 16][4];
#pragma unroll
  for (int kk = 0; kk < DMAX / 16; ++kk) {
    const int c = kk * 16 + 2 * tq;
    qa[kk][0] = pack_bf16(q_at(0, c), q_at(0, c + 1));
    qa[kk][1] = pack_bf16(q_at(1, c), q_at(1, c + 1));
    qa[kk][2] = pack_bf16(q_at(0, c + 8), q_at(0, c + 9));
    qa[kk][3] = pack_bf16(q_at(1, c + 8), q_at(1, c + 9));
  }
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  float o[DMAX / 8][4];
  zero_rows<DMAX>(o);

  for (int64_t j0 = 0; j0 < g.n; j0 += mma_keys) {
    __syncthreads();  // the previous tile's readers are done
    load_bf16_tile<DMAX>(k + base, j0, g, ks, nullptr);
    load_bf16_tile<DMAX>(v + base, j0, g, nullptr, vt);  // V is only ever a B operand
    for (int jj = threadIdx.x; jj < mma_keys; jj += mma_threads) real[jj] = key_is_real(g, b, j0 + jj);
    __syncthreads();

    TileFragments s;
    zero(s);
#pragma unroll
    for (int kk = 0; kk < DMAX / 16; ++kk)
#pragma unroll
      for (int nt = 0; nt < mma_col_tiles; ++nt) {
        const bf16* krow = ks + (nt * 8 + gq) * LD + kk * 16 + 2 * tq;
        const uint32_t bf[2] = {pair_at(krow), pair_at(krow + 8)};
        mma_bf16(s[nt], qa[kk], bf);
      }
    float alpha[2];
    online_softmax_step(s, real, scale, dr, g, bh, rows, j0, m, l, alpha);
#pragma unroll
    for (int dt = 0; dt < DMAX / 8; ++dt) {
      o[dt][0] *= alpha[0];
      o[dt][1] *= alpha[0];
      o[dt][2] *= alpha[1];
      o[dt][3] *= alpha[1];
    }
    bf16_fragments_times_tile<DMAX>(s, vt, o);
  }

  float inv[2], row_lse[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) inv[h] = finish_row(m[h], l[h], row_lse[h]);
  store_bf16_rows<DMAX>(o, rows, inv, g, out + base);
#pragma unroll
  for (int h = 0; h < 2; ++h)
    if (rows[h] < g.n && tq == 0) lse[bh * g.n + rows[h]] = row_lse[h];
}

// delta_i = dO_i · O_i in fp32 from the bf16 rows: one warp per row, WARPS rows per block.
template <int WARPS>
__global__ void __launch_bounds__(WARPS * 32)
    row_dot_bf16_kernel(const bf16* __restrict__ x, const bf16* __restrict__ y, int64_t rows,
                        int d, float* __restrict__ out) {
  const int lane = threadIdx.x % 32;
  const int64_t row = int64_t{blockIdx.x} * WARPS + threadIdx.x / 32;
  float acc = 0.0f;
  if (row < rows)
    for (int c = lane; c < d; c += 32) acc += to_float(x[row * d + c]) * to_float(y[row * d + c]);
  for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  if (row < rows && lane == 0) out[row] = acc;
}

// One block per 64-key tile: dV = Σ Wᵀ dO and dK = Σ dSᵀ Q over the query tiles, from
// Sᵀ = K Qᵀ and dPᵀ = V dOᵀ (the warp's 16 keys are the rows of every fragment).
template <int DMAX>
__global__ void __launch_bounds__(mma_threads)
    dkdv_bf16_kernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                     const bf16* __restrict__ v, Geometry g, float scale, Dropout dr,
                     const float* __restrict__ lse, const float* __restrict__ delta,
                     const bf16* __restrict__ d_out, int64_t tiles, bf16* __restrict__ dk,
                     bf16* __restrict__ dv) {
  constexpr int LD = bf16_row_ld<DMAX>();
  LRA_DYNAMIC_SHARED(smem);
  bf16* ks = reinterpret_cast<bf16*>(smem);  // [64][LD] each
  bf16* vs = ks + mma_keys * LD;
  bf16* qs = vs + mma_keys * LD;
  bf16* gs = qs + mma_keys * LD;  // dO
  bf16* qt = gs + mma_keys * LD;  // [DMAX][64 + 8] each
  bf16* gt = qt + DMAX * bf16_col_ld;
  float* lses = reinterpret_cast<float*>(gt + DMAX * bf16_col_ld);
  float* deltas = lses + mma_keys;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane / 4;
  const int64_t bh = blockIdx.x / tiles, j0 = (blockIdx.x % tiles) * mma_keys, b = bh / g.heads;
  const int64_t base = bh * g.n * g.d;
  const int64_t keys[2] = {j0 + warp * 16 + gq, j0 + warp * 16 + gq + 8};
  const bool real[2] = {key_is_real(g, b, keys[0]), key_is_real(g, b, keys[1])};

  load_bf16_tile<DMAX>(k + base, j0, g, ks, nullptr);
  load_bf16_tile<DMAX>(v + base, j0, g, vs, nullptr);
  float dka[DMAX / 8][4], dva[DMAX / 8][4];
  zero_rows<DMAX>(dka);
  zero_rows<DMAX>(dva);

  for (int64_t i0 = 0; i0 < g.n; i0 += mma_keys) {
    __syncthreads();
    load_bf16_tile<DMAX>(q + base, i0, g, qs, qt);
    load_bf16_tile<DMAX>(d_out + base, i0, g, gs, gt);
    for (int ii = threadIdx.x; ii < mma_keys; ii += mma_threads) {
      const int64_t row = i0 + ii;
      lses[ii] = row < g.n ? lse[bh * g.n + row] : -INFINITY;
      deltas[ii] = row < g.n ? delta[bh * g.n + row] : 0.0f;
    }
    __syncthreads();
    TileFragments st, dpt;
    zero(st);
    zero(dpt);
    bf16_rows_times_rows<DMAX>(ks, qs, st);
    bf16_rows_times_rows<DMAX>(vs, gs, dpt);
    key_side_weights(st, dpt, lses, deltas, real, scale, dr, g, bh, i0, keys);
    bf16_fragments_times_tile<DMAX>(st, gt, dva);
    bf16_fragments_times_tile<DMAX>(dpt, qt, dka);
  }
  const float one[2] = {1.0f, 1.0f};
  store_bf16_rows<DMAX>(dka, keys, one, g, dk + base);
  store_bf16_rows<DMAX>(dva, keys, one, g, dv + base);
}

// One block per 64-query tile: dQ = Σ dS K over the key tiles, S = Q Kᵀ, dP = dO Vᵀ.
template <int DMAX>
__global__ void __launch_bounds__(mma_threads)
    dq_bf16_kernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                   const bf16* __restrict__ v, Geometry g, float scale, Dropout dr,
                   const float* __restrict__ lse, const float* __restrict__ delta,
                   const bf16* __restrict__ d_out, int64_t tiles, bf16* __restrict__ dq) {
  constexpr int LD = bf16_row_ld<DMAX>();
  LRA_DYNAMIC_SHARED(smem);
  bf16* qs = reinterpret_cast<bf16*>(smem);  // [64][LD] each
  bf16* gs = qs + mma_keys * LD;             // dO
  bf16* ks = gs + mma_keys * LD;
  bf16* vs = ks + mma_keys * LD;
  bf16* kt = vs + mma_keys * LD;  // [DMAX][64 + 8]
  unsigned char* real = reinterpret_cast<unsigned char*>(kt + DMAX * bf16_col_ld);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane / 4;
  const int64_t bh = blockIdx.x / tiles, i0 = (blockIdx.x % tiles) * mma_rows, b = bh / g.heads;
  const int64_t base = bh * g.n * g.d;
  const int64_t rows[2] = {i0 + warp * 16 + gq, i0 + warp * 16 + gq + 8};
  float my_lse[2], my_delta[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    my_lse[h] = rows[h] < g.n ? lse[bh * g.n + rows[h]] : -INFINITY;
    my_delta[h] = rows[h] < g.n ? delta[bh * g.n + rows[h]] : 0.0f;
  }
  load_bf16_tile<DMAX>(q + base, i0, g, qs, nullptr);
  load_bf16_tile<DMAX>(d_out + base, i0, g, gs, nullptr);
  float dqa[DMAX / 8][4];
  zero_rows<DMAX>(dqa);

  for (int64_t j0 = 0; j0 < g.n; j0 += mma_keys) {
    __syncthreads();
    load_bf16_tile<DMAX>(k + base, j0, g, ks, kt);
    load_bf16_tile<DMAX>(v + base, j0, g, vs, nullptr);
    for (int jj = threadIdx.x; jj < mma_keys; jj += mma_threads) real[jj] = key_is_real(g, b, j0 + jj);
    __syncthreads();
    TileFragments s, dp;
    zero(s);
    zero(dp);
    bf16_rows_times_rows<DMAX>(qs, ks, s);
    bf16_rows_times_rows<DMAX>(gs, vs, dp);
    query_side_ds(s, dp, real, my_lse, my_delta, scale, dr, g, bh, rows, j0);
    bf16_fragments_times_tile<DMAX>(s, kt, dqa);
  }
  const float one[2] = {1.0f, 1.0f};
  store_bf16_rows<DMAX>(dqa, rows, one, g, dq + base);
}

}  // namespace lra::core::cuda::flash
