// One step of the Nyström pseudo-inverse iteration (core::pinv_iterate) per m x m matrix in
// one thread block, every operand in shared memory: one launch per step and direction
// instead of about seven cuBLAS calls and scaled copies, which at the landmark counts of
// LRA (m = 32 ... 64) are launch-bound.
//
// 1024 threads as 32 x 32; thread (ty, tx) owns elements (ty + 32 r, tx + 32 c), r, c < 2,
// so m <= 64. Matrices sit in shared memory with an odd row stride: the transposed reads
// (column k of a row-major matrix across the warp) hit 32 distinct banks.
//
// Device code only (the launches are in pinv_step.cu), so that the CPU emulation test
// (tests/core/cuda_kernel_emulation_test.cpp) runs these same kernels.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/cuda/dynamic_shared.cuh"

namespace lra::core::cuda::pinv {

constexpr int side = 32;  // threads per block side
constexpr int per = 2;    // elements per thread per side: m <= side * per
constexpr int max_m = side * per;
constexpr int forward_buffers = 5;   // A, Z, P, U1, U2
constexpr int backward_buffers = 7;  // A, Z, P, U1, U2 (then dU2), G (then dU1), dP
constexpr size_t smem_limit = 200 * 1024;  // of the H100's 227 KiB: the rest for L1

inline int stride_of(int64_t m) { return static_cast<int>((m + 1) | 1); }
inline size_t smem_bytes(int64_t m, size_t elem, int buffers) {
  return static_cast<size_t>(buffers) * static_cast<size_t>(m) * stride_of(m) * elem;
}

// acc = op(X) op(Y) at this thread's elements (zero outside the matrix).
template <typename T>
__device__ inline void tile_product(int m, int ld, const T* x, bool tx_, const T* y, bool ty_,
                                    T (&acc)[per][per]) {
  const int tx = threadIdx.x % side, ty = threadIdx.x / side;
#pragma unroll
  for (int r = 0; r < per; ++r)
#pragma unroll
    for (int c = 0; c < per; ++c) acc[r][c] = T(0);
  for (int k = 0; k < m; ++k) {
    T xv[per], yv[per];
#pragma unroll
    for (int r = 0; r < per; ++r) {
      const int i = ty + side * r;
      xv[r] = i < m ? (tx_ ? x[k * ld + i] : x[i * ld + k]) : T(0);
    }
#pragma unroll
    for (int c = 0; c < per; ++c) {
      const int j = tx + side * c;
      yv[c] = j < m ? (ty_ ? y[j * ld + k] : y[k * ld + j]) : T(0);
    }
#pragma unroll
    for (int r = 0; r < per; ++r)
#pragma unroll
      for (int c = 0; c < per; ++c) acc[r][c] += xv[r] * yv[c];
  }
}

template <typename T> __device__ inline void load(int m, int ld, const T* src, T* dst) {
  for (int e = threadIdx.x; e < m * m; e += side * side) dst[(e / m) * ld + e % m] = src[e];
}

// Visits this thread's elements (i, j) inside the matrix with their register slot.
#define LRA_FOR_OWN(m, body)                                   \
  _Pragma("unroll") for (int r = 0; r < per; ++r)              \
      _Pragma("unroll") for (int c = 0; c < per; ++c) {        \
    const int i = threadIdx.x / side + side * r;               \
    const int j = threadIdx.x % side + side * c;               \
    if (i < (m) && j < (m)) { body; }                          \
  }

// P = A Z, U1 = 7P − P P, U2 = 15P − P U1, Z' = 13/4 Z − 1/4 Z U2 (one matrix per block).
template <typename T>
__global__ void __launch_bounds__(side * side)
    step_kernel(int m, const T* __restrict__ a, const T* __restrict__ z, T* __restrict__ p_out,
                T* __restrict__ u1_out, T* __restrict__ u2_out, T* __restrict__ z_next) {
  LRA_DYNAMIC_SHARED(smem);
  const int ld = (m + 1) | 1;
  const int64_t at = static_cast<int64_t>(blockIdx.x) * m * m;
  T* as = reinterpret_cast<T*>(smem);
  T* zs = as + m * ld;
  T* ps = zs + m * ld;
  T* u1s = ps + m * ld;
  T* u2s = u1s + m * ld;
  load(m, ld, a + at, as);
  load(m, ld, z + at, zs);
  __syncthreads();
  T acc[per][per];
  tile_product(m, ld, as, false, zs, false, acc);
  LRA_FOR_OWN(m, ps[i * ld + j] = acc[r][c]; p_out[at + i * m + j] = acc[r][c]);
  __syncthreads();
  tile_product(m, ld, ps, false, ps, false, acc);
  LRA_FOR_OWN(m, const T u = T(7) * ps[i * ld + j] - acc[r][c]; u1s[i * ld + j] = u;
              u1_out[at + i * m + j] = u);
  __syncthreads();
  tile_product(m, ld, ps, false, u1s, false, acc);
  LRA_FOR_OWN(m, const T u = T(15) * ps[i * ld + j] - acc[r][c]; u2s[i * ld + j] = u;
              u2_out[at + i * m + j] = u);
  __syncthreads();
  tile_product(m, ld, zs, false, u2s, false, acc);
  LRA_FOR_OWN(m, z_next[at + i * m + j] = T(13) / T(4) * zs[i * ld + j] - T(0.25) * acc[r][c]);
}

// Backward of one step given G = dZ': dA += dP Zᵀ and dZ = 13/4 G − 1/4 G U2ᵀ + Aᵀ dP, with
// dU2 = −1/4 Zᵀ G, dP = 15 dU2 − dU2 U1ᵀ + 7 dU1 − dU1 Pᵀ − Pᵀ dU1, dU1 = −Pᵀ dU2.
template <typename T>
__global__ void __launch_bounds__(side * side)
    step_backward_kernel(int m, const T* __restrict__ a, const T* __restrict__ z,
                         const T* __restrict__ p, const T* __restrict__ u1,
                         const T* __restrict__ u2, const T* __restrict__ g, T* __restrict__ d_a,
                         T* __restrict__ d_z) {
  LRA_DYNAMIC_SHARED(smem);
  const int ld = (m + 1) | 1;
  const int64_t at = static_cast<int64_t>(blockIdx.x) * m * m;
  T* as = reinterpret_cast<T*>(smem);
  T* zs = as + m * ld;
  T* ps = zs + m * ld;
  T* u1s = ps + m * ld;
  T* u2s = u1s + m * ld;  // U2, then dU2
  T* gs = u2s + m * ld;   // G, then dU1
  T* dps = gs + m * ld;
  load(m, ld, a + at, as);
  load(m, ld, z + at, zs);
  load(m, ld, p + at, ps);
  load(m, ld, u1 + at, u1s);
  load(m, ld, u2 + at, u2s);
  load(m, ld, g + at, gs);
  __syncthreads();
  T acc[per][per], dz[per][per];
  tile_product(m, ld, gs, false, u2s, true, acc);  // G U2ᵀ
  LRA_FOR_OWN(m, dz[r][c] = T(13) / T(4) * gs[i * ld + j] - T(0.25) * acc[r][c]);
  tile_product(m, ld, zs, true, gs, false, acc);  // Zᵀ G
  __syncthreads();                                // every read of U2 is done
  LRA_FOR_OWN(m, u2s[i * ld + j] = T(-0.25) * acc[r][c]);
  __syncthreads();
  T* du2 = u2s;
  tile_product(m, ld, du2, false, u1s, true, acc);  // dU2 U1ᵀ
  LRA_FOR_OWN(m, dps[i * ld + j] = T(15) * du2[i * ld + j] - acc[r][c]);
  tile_product(m, ld, ps, true, du2, false, acc);  // Pᵀ dU2
  __syncthreads();                                 // every read of G is done
  LRA_FOR_OWN(m, gs[i * ld + j] = -acc[r][c]);
  __syncthreads();
  T* du1 = gs;
  T acc2[per][per];
  tile_product(m, ld, du1, false, ps, true, acc);   // dU1 Pᵀ
  tile_product(m, ld, ps, true, du1, false, acc2);  // Pᵀ dU1
  LRA_FOR_OWN(m, dps[i * ld + j] += T(7) * du1[i * ld + j] - acc[r][c] - acc2[r][c]);
  __syncthreads();
  tile_product(m, ld, dps, false, zs, true, acc);  // dP Zᵀ
  LRA_FOR_OWN(m, d_a[at + i * m + j] += acc[r][c]);
  tile_product(m, ld, as, true, dps, false, acc);  // Aᵀ dP
  LRA_FOR_OWN(m, d_z[at + i * m + j] = dz[r][c] + acc[r][c]);
}

}  // namespace lra::core::cuda::pinv
