// Flash-style softmax attention forward on tensor cores (TF32 products, fp32 accumulation
// and fp32 softmax), for f32 tensors when the matmul precision is TF32
// (core/precision.h). Same semantics as forward_kernel in fused_attention_kernels.cuh: key
// mask, -inf log-sum-exp without real keys, dropout with the CPU's draws.
//
// 128 threads = 4 warps; a block owns 64 query rows, 16 per warp, and streams 64-key tiles
// of K and V through shared memory. Per warp and key tile: S (16 x 64) = Q Kᵀ as
// 8 x (D / 8) mma.m16n8k8, the online softmax on S's accumulator fragments (a row's values
// sit in one quad of lanes: two shuffles per reduction), then O += P V with P's accumulator
// fragments used directly as A fragments: within each 8 keys, A's k = t is taken as key 2t
// and k = t + 4 as key 2t + 1 (the C layout), and V's rows are read in that order. Q's
// fragments stay in registers for the whole block. Rows of K and V in shared memory are
// D + 4 floats apart, so every fragment read hits 32 distinct banks.
//
// Device code only (launched from fused_attention.cu; the CPU emulation test runs it too).
#pragma once
#include <cstdint>

#include "core/cuda/fused_attention_kernels.cuh"
#include "core/cuda/mma_tf32.cuh"

namespace lra::core::cuda::flash {

constexpr int tf32_threads = 128;
constexpr int tf32_rows = 64;  // query rows per block: 16 per warp
constexpr int tf32_keys = 64;  // keys per tile

template <int DMAX> size_t forward_tf32_smem() {
  return 2 * tf32_keys * (DMAX + 4) * sizeof(float) + tf32_keys;
}

__device__ inline float q_element(const float* q, int64_t base, const Geometry& g, int64_t row,
                                  int col) {
  return (row < g.n && col < g.d) ? q[base + row * g.d + col] : 0.0f;
}

template <int DMAX>
__global__ void __launch_bounds__(tf32_threads)
    forward_tf32_kernel(const float* __restrict__ q, const float* __restrict__ k,
                        const float* __restrict__ v, Geometry g, float scale, Dropout dr,
                        int64_t tiles, float* __restrict__ out, float* __restrict__ lse) {
  constexpr int LD = DMAX + 4;
  constexpr int KS = DMAX / 8;       // k-steps of Q Kᵀ over the head dim
  constexpr int NT = tf32_keys / 8;  // 8-key column tiles of S
  constexpr int DT = DMAX / 8;       // 8-wide column tiles of O
  LRA_DYNAMIC_SHARED(smem);
  float* ks = reinterpret_cast<float*>(smem);  // [64][LD]
  float* vs = ks + tf32_keys * LD;             // [64][LD]
  unsigned char* real = reinterpret_cast<unsigned char*>(vs + tf32_keys * LD);  // [64]
  const float neg_inf = -INFINITY;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane / 4, tq = lane % 4;
  const int64_t bh = blockIdx.x / tiles, i0 = (blockIdx.x % tiles) * tf32_rows, b = bh / g.heads;
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

  for (int64_t j0 = 0; j0 < g.n; j0 += tf32_keys) {
    __syncthreads();  // the previous tile's readers are done
    for (int idx = threadIdx.x; idx < tf32_keys * DMAX; idx += tf32_threads) {
      const int r = idx / DMAX, c = idx % DMAX;
      const int64_t key = j0 + r;
      const bool inside = key < g.n && c < g.d;
      ks[r * LD + c] = inside ? k[base + key * g.d + c] : 0.0f;
      vs[r * LD + c] = inside ? v[base + key * g.d + c] : 0.0f;
    }
    for (int jj = threadIdx.x; jj < tf32_keys; jj += tf32_threads) real[jj] = key_is_real(g, b, j0 + jj);
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
        const uint32_t bf[2] = {to_tf32(krow[0]), to_tf32(krow[4])};
        mma_tf32(s[nt], qa[kk], bf);
      }

    // Online softmax: element e of column tile nt is row rows[e / 2], key nt * 8 + 2 tq + e % 2.
    float mx[2] = {neg_inf, neg_inf};
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = real[nt * 8 + 2 * tq + (e & 1)] ? s[nt][e] * scale : neg_inf;
        mx[e >> 1] = fmaxf(mx[e >> 1], s[nt][e]);
      }
    float alpha[2];
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
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int h = e >> 1;
        float p = s[nt][e] == neg_inf ? 0.0f : expf(s[nt][e] - m[h]);
        l[h] += p;
        if (dr.on && p != 0.0f)
          p *= keep_multiplier<float>(
              dr, dr.offset + static_cast<uint64_t>((bh * g.n + rows[h]) * g.n + j0 + nt * 8 +
                                                    2 * tq + (e & 1)));
        s[nt][e] = p;
      }
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
        const uint32_t bf[2] = {to_tf32(v0[dt * 8]), to_tf32(v0[LD + dt * 8])};
        mma_tf32(o[dt], pa, bf);
      }
    }
  }

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
    if (rows[h] >= g.n) continue;
    const float inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
    float* orow = out + base + rows[h] * g.d;
#pragma unroll
    for (int dt = 0; dt < DT; ++dt) {
      const int col = dt * 8 + 2 * tq;
      if (col < g.d) orow[col] = o[dt][2 * h] * inv;
      if (col + 1 < g.d) orow[col + 1] = o[dt][2 * h + 1] * inv;
    }
    if (tq == 0) lse[bh * g.n + rows[h]] = l[h] > 0.0f ? m[h] + logf(l[h]) : neg_inf;
  }
}

}  // namespace lra::core::cuda::flash
