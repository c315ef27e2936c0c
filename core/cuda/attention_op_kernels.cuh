#pragma once
// The CUDA kernels of core/ops_attention.h (feature maps, sequence masking, the Nyström
// pseudo-inverse initialisation, crops, dropout thresholds), device code only: the
// launches are in attention_ops.cu, and the CPU emulation test
// (tests/core/cuda_emulation_attention_ops_test.cpp) runs these same kernels against the
// CPU ops. Elementwise kernels stride over the grid of grid_stride.cuh; pinv_init and its
// backward take one block of pinv_init_threads per matrix.
#include <cstddef>
#include <cstdint>

#include "core/cpu/attention_kernels.h"  // AttnUnary
#include "core/cuda/block_reduce.cuh"
#include "core/cuda/dynamic_shared.cuh"
#include "core/cuda/grid_stride.cuh"

namespace lra::core::cuda {

constexpr int pinv_init_threads = 256;  // a power of two: the backward's tree reduction

// Shared memory of pinv_init_kernel and pinv_init_backward_kernel for m x m matrices:
// column sums [m], row sums [m], then the backward's reduction scratch [threads].
inline std::size_t pinv_init_shared_bytes(int64_t m, std::size_t elem) {
  return static_cast<std::size_t>(2 * m + pinv_init_threads) * elem;
}

template <typename T>
__device__ inline T sign_of(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
}

template <typename T>
__global__ void unary_kernel(cpu::AttnUnary op, const T* x, int64_t n, T* y) {
  using cpu::AttnUnary;
  LRA_GRID_STRIDE(i, n) {
    T v = x[i];
    switch (op) {
      case AttnUnary::elu_plus_one:
        y[i] = v > T(0) ? v + T(1) : exp(v);
        break;
      case AttnUnary::exp:
        y[i] = exp(v);
        break;
      case AttnUnary::reciprocal_or_zero:
        y[i] = v != T(0) ? T(1) / v : T(0);
        break;
    }
  }
}

template <typename T>
__global__ void unary_backward_kernel(cpu::AttnUnary op, const T* p, const T* g, int64_t n, T* d) {
  using cpu::AttnUnary;
  LRA_GRID_STRIDE(i, n) {
    switch (op) {
      case AttnUnary::elu_plus_one:
        d[i] = p[i] > T(0) ? g[i] : g[i] * exp(p[i]);
        break;
      case AttnUnary::exp:
        d[i] = g[i] * p[i];
        break;
      case AttnUnary::reciprocal_or_zero:
        d[i] = -g[i] * p[i] * p[i];
        break;
    }
  }
}

// x viewed as rows (batch, head, seq) of `width`; identity_rows: set_rows_identity.
template <typename T>
__global__ void mask_rows_kernel(const T* x, const void* mask, bool mask_f32, int64_t heads,
                                 int64_t seq, int64_t width, int64_t total, bool identity_rows,
                                 T* y) {
  LRA_GRID_STRIDE(idx, total) {
    int64_t r = idx / width, c = idx % width;
    int64_t batch = r / (heads * seq), n = r % seq;
    if (mask_keep(mask, mask_f32, batch * seq + n))
      y[idx] = x[idx];
    else
      y[idx] = (identity_rows && c == n) ? T(1) : T(0);
  }
}

// Shared layout per matrix: col sums [m], row sums [m], then reduction scratch [threads].
template <typename T>
__device__ void matrix_norms(const T* a, int64_t m, T* cols, T* rows, T& n1, int64_t& col, T& ninf,
                             int64_t& row) {
  // Same summation order as the CPU: each row sum over j, each column sum over i.
  for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
    T s = 0;
    for (int64_t j = 0; j < m; ++j) s += abs(a[i * m + j]);
    rows[i] = s;
  }
  for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
    T s = 0;
    for (int64_t i = 0; i < m; ++i) s += abs(a[i * m + j]);
    cols[j] = s;
  }
  __syncthreads();
  // First maximiser, as the CPU's strict > scan (m is the landmark count: small).
  ninf = T(-1);
  row = 0;
  n1 = T(-1);
  col = 0;
  for (int64_t i = 0; i < m; ++i)
    if (rows[i] > ninf) {
      ninf = rows[i];
      row = i;
    }
  for (int64_t j = 0; j < m; ++j)
    if (cols[j] > n1) {
      n1 = cols[j];
      col = j;
    }
}

template <typename T>
__global__ void pinv_init_kernel(const T* a, int64_t m, T* z) {
  LRA_DYNAMIC_SHARED(smem);
  T* cols = reinterpret_cast<T*>(smem);
  T* rows = cols + m;
  const T* x = a + blockIdx.x * m * m;
  T* out = z + blockIdx.x * m * m;
  T n1, ninf;
  int64_t col, row;
  matrix_norms(x, m, cols, rows, n1, col, ninf, row);
  T c = (n1 > T(0) && ninf > T(0)) ? T(1) / (n1 * ninf) : T(0);
  for (int64_t e = threadIdx.x; e < m * m; e += blockDim.x) {
    int64_t i = e / m, j = e % m;
    out[e] = c * x[j * m + i];
  }
}

template <typename T>
__global__ void pinv_init_backward_kernel(const T* a, const T* dz0, int64_t m, T* da) {
  LRA_DYNAMIC_SHARED(smem);
  T* cols = reinterpret_cast<T*>(smem);
  T* rows = cols + m;
  T* red = rows + m;
  const T* x = a + blockIdx.x * m * m;
  const T* g = dz0 + blockIdx.x * m * m;
  T* d = da + blockIdx.x * m * m;
  T n1, ninf;
  int64_t col, row;
  matrix_norms(x, m, cols, rows, n1, col, ninf, row);
  if (!(n1 > T(0) && ninf > T(0))) {  // the same norms in every thread: all leave together
    for (int64_t e = threadIdx.x; e < m * m; e += blockDim.x) d[e] = T(0);
    return;
  }
  T c = T(1) / (n1 * ninf);
  // dc = sum dZ0 ⊙ Aᵀ by a fixed tree (deterministic).
  T part = 0;
  for (int64_t e = threadIdx.x; e < m * m; e += blockDim.x) {
    int64_t i = e / m, j = e % m;
    part += g[j * m + i] * x[e];
  }
  red[threadIdx.x] = part;
  __syncthreads();
  for (int s = static_cast<int>(blockDim.x) / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  T dc = red[0];
  T dn1 = -dc * c / n1, dninf = -dc * c / ninf;
  for (int64_t e = threadIdx.x; e < m * m; e += blockDim.x) {
    int64_t i = e / m, j = e % m;
    T v = c * g[j * m + i];
    if (j == col) v += dn1 * sign_of(x[e]);
    if (i == row) v += dninf * sign_of(x[e]);
    d[e] = v;
  }
}

template <typename T>
__global__ void crop_kernel(const T* x, int64_t cols, int64_t out_cols, int64_t total, T* y) {
  LRA_GRID_STRIDE(e, total) y[e] = x[(e / out_cols) * cols + e % out_cols];
}

template <typename T>
__global__ void crop_backward_kernel(T* dx, int64_t cols, const T* dy, int64_t in_cols,
                                     int64_t total) {
  LRA_GRID_STRIDE(e, total) dx[(e / in_cols) * cols + e % in_cols] += dy[e];
}

// Dropout multipliers from uniforms in y: 0 below thr, else keep.
template <typename T>
__global__ void threshold_kernel(T* y, int64_t n, T thr, T keep) {
  LRA_GRID_STRIDE(i, n) y[i] = y[i] < thr ? T(0) : keep;
}

}  // namespace lra::core::cuda
