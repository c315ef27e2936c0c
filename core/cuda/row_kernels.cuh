#pragma once
// Row-wise CUDA kernels (masked softmax and its backward, layer norm and its dx, row sums
// and row dots), device
// code only so that the CPU emulation test runs them too.
//
// A row of up to 1024 columns is one warp's (8 rows per 256-thread block, butterfly warp
// reductions); a longer row is a whole block's (fixed-tree block reductions). One thread
// block per row left 7/8 of the threads idle and paid two block-wide reduction trees per
// row on the short rows lra has most of: Nyström's N x 64 landmark scores, layer norms over
// a model dim of 64. Which path a row takes depends on its length only, so results stay
// bit-reproducible. No thread leaves before a reduction: every lane of a group reaches
// every shuffle or barrier (rows past the end compute on nothing and write nothing).
#include <cmath>
#include <cstdint>

#include "core/cuda/block_reduce.cuh"

namespace lra::core::cuda {

constexpr int row_block_threads = 256;
constexpr int64_t warp_row_max_cols = 1024;

inline bool rows_per_warp(int64_t cols) { return cols <= warp_row_max_cols; }
// Blocks for `rows` rows of `cols` columns (the kernels' Warp parameter = rows_per_warp).
inline unsigned row_blocks(int64_t rows, int64_t cols) {
  const int64_t per_block = rows_per_warp(cols) ? row_block_threads / 32 : 1;
  return static_cast<unsigned>((rows + per_block - 1) / per_block);
}

// This thread's row, its first column and the column stride.
template <bool Warp> struct RowSlot {
  int64_t row;
  int lane, width;
  __device__ RowSlot() {
    if (Warp) {
      row = static_cast<int64_t>(blockIdx.x) * (row_block_threads / 32) + threadIdx.x / 32;
      lane = static_cast<int>(threadIdx.x % 32);
      width = 32;
    } else {
      row = blockIdx.x;
      lane = static_cast<int>(threadIdx.x);
      width = static_cast<int>(blockDim.x);
    }
  }
};

template <typename T, bool Warp> __device__ inline T row_sum(T v, T* shared) {
  if constexpr (Warp) {
    (void)shared;
    return warp_sum(v);
  } else {
    return block_sum(v, shared);
  }
}
template <typename T, bool Warp> __device__ inline T row_max(T v, T* shared) {
  if constexpr (Warp) {
    (void)shared;
    return warp_max(v);
  } else {
    return block_max(v, shared);
  }
}

// y = softmax(scale x) over the real keys of each row (rows of a batch share a mask row);
// a row without any real key is all zeros.
template <typename T, bool Warp>
__global__ void softmax_kernel(const T* x, const void* mask, bool mask_f32, int64_t rows,
                               int64_t rows_per_batch, int64_t cols, T scale, T* y) {
  __shared__ T shared[row_block_threads];
  const RowSlot<Warp> s;
  const int64_t n = s.row < rows ? cols : 0;  // rows past the end: no columns
  const T* xr = x + s.row * cols;
  T* yr = y + s.row * cols;
  const int64_t mrow = mask ? (s.row / rows_per_batch) * cols : 0;
  T mx = -INFINITY;
  for (int64_t c = s.lane; c < n; c += s.width)
    if (!mask || mask_keep(mask, mask_f32, mrow + c)) mx = fmax(mx, scale * xr[c]);
  mx = row_max<T, Warp>(mx, shared);
  T total = 0;
  for (int64_t c = s.lane; c < n; c += s.width) {
    const bool real = (!mask || mask_keep(mask, mask_f32, mrow + c)) && mx != T(-INFINITY);
    const T e = real ? exp(scale * xr[c] - mx) : T(0);
    yr[c] = e;
    total += e;
  }
  total = row_sum<T, Warp>(total, shared);
  const T inv = total > T(0) ? T(1) / total : T(0);
  for (int64_t c = s.lane; c < n; c += s.width) yr[c] *= inv;
}

// dx = scale y (dy - rowdot(y, dy)).
template <typename T, bool Warp>
__global__ void softmax_backward_kernel(const T* y, const T* dy, int64_t rows, int64_t cols,
                                        T scale, T* dx) {
  __shared__ T shared[row_block_threads];
  const RowSlot<Warp> s;
  const int64_t n = s.row < rows ? cols : 0;
  const int64_t at = s.row * cols;
  T dot = 0;
  for (int64_t c = s.lane; c < n; c += s.width) dot += y[at + c] * dy[at + c];
  dot = row_sum<T, Warp>(dot, shared);
  for (int64_t c = s.lane; c < n; c += s.width) dx[at + c] = scale * y[at + c] * (dy[at + c] - dot);
}

template <typename T, bool Warp>
__global__ void layer_norm_kernel(const T* x, const T* g, const T* b, int64_t rows, int64_t cols,
                                  T eps, T* y, T* mean, T* rstd) {
  __shared__ T shared[row_block_threads];
  const RowSlot<Warp> s;
  const int64_t n = s.row < rows ? cols : 0;
  const T* xr = x + s.row * cols;
  T sum = 0;
  for (int64_t c = s.lane; c < n; c += s.width) sum += xr[c];
  const T mu = row_sum<T, Warp>(sum, shared) / static_cast<T>(cols);
  T v = 0;
  for (int64_t c = s.lane; c < n; c += s.width) v += (xr[c] - mu) * (xr[c] - mu);
  const T inv = T(1) / sqrt(row_sum<T, Warp>(v, shared) / static_cast<T>(cols) + eps);
  for (int64_t c = s.lane; c < n; c += s.width) y[s.row * cols + c] = (xr[c] - mu) * inv * g[c] + b[c];
  if (s.lane == 0 && s.row < rows) {
    mean[s.row] = mu;
    rstd[s.row] = inv;
  }
}

// residual (optional: null) is added into dx.
template <typename T, bool Warp>
__global__ void layer_norm_dx_kernel(const T* x, const T* g, const T* mean, const T* rstd,
                                     const T* dy, const T* residual, int64_t rows, int64_t cols,
                                     T* dx) {
  __shared__ T shared[row_block_threads];
  const RowSlot<Warp> s;
  const bool inside = s.row < rows;
  const int64_t n = inside ? cols : 0;
  const T* xr = x + s.row * cols;
  const T* gr = dy + s.row * cols;
  const T mu = inside ? mean[s.row] : T(0), inv = inside ? rstd[s.row] : T(0);
  T a = 0, b = 0;
  for (int64_t c = s.lane; c < n; c += s.width) {
    const T xhat = (xr[c] - mu) * inv;
    const T dxhat = gr[c] * g[c];
    a += dxhat;
    b += dxhat * xhat;
  }
  a = row_sum<T, Warp>(a, shared) / static_cast<T>(cols);
  b = row_sum<T, Warp>(b, shared) / static_cast<T>(cols);
  for (int64_t c = s.lane; c < n; c += s.width) {
    const T xhat = (xr[c] - mu) * inv;
    const T d = inv * (gr[c] * g[c] - a - xhat * b);
    dx[s.row * cols + c] = residual ? d + residual[s.row * cols + c] : d;
  }
}

// out[r] = alpha * the sum over row r of a, or of a * b when b is given (sum_rows, row_dot).
template <typename T, bool Warp>
__global__ void row_reduce_kernel(const T* a, const T* b, int64_t rows, int64_t cols, T alpha,
                                  T* out) {
  __shared__ T shared[row_block_threads];
  const RowSlot<Warp> s;
  const int64_t n = s.row < rows ? cols : 0;
  const int64_t at = s.row * cols;
  T sum = 0;
  for (int64_t c = s.lane; c < n; c += s.width) sum += b ? a[at + c] * b[at + c] : a[at + c];
  sum = row_sum<T, Warp>(sum, shared);
  if (s.lane == 0 && s.row < rows) out[s.row] = alpha * sum;
}

}  // namespace lra::core::cuda
