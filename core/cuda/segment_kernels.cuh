#pragma once
// Nyström's segment means on CUDA (core::segment_means and its backward), device code only
// so that the CPU emulation test runs it too. Segments are over the real tokens of each
// sequence, in order: first each sequence's real positions are listed (a block per
// sequence, a prefix count over 256-position chunks), then one block per (batch, head,
// segment) averages its rows. The listing was one thread per sequence walking it serially
// (thousands of dependent steps at N = 2048 and more, four times per layer and step).
#include <cstdint>

#include "core/cuda/block_reduce.cuh"

namespace lra::core::cuda {

constexpr int real_positions_threads = 256;

// grid (B), block Threads (= real_positions_threads): count[b] = the number of real tokens
// of sequence b and, unless positions is null, positions[b, 0..count[b]) = their positions
// in order (Nyström's segments, Skeinformer's row sampling). A template so that the header
// defines it inline.
template <int Threads = real_positions_threads>
__global__ void real_positions_kernel(const void* mask, bool mask_f32, int64_t seq, int* positions,
                                      int* count) {
  __shared__ int scan[Threads];
  __shared__ int carry;
  const int64_t b = blockIdx.x;
  const int t = static_cast<int>(threadIdx.x);
  if (t == 0) carry = 0;
  __syncthreads();
  for (int64_t base = 0; base < seq; base += Threads) {
    const int64_t i = base + t;
    const int flag = (i < seq && (!mask || mask_keep(mask, mask_f32, b * seq + i))) ? 1 : 0;
    scan[t] = flag;
    __syncthreads();
    for (int off = 1; off < Threads; off <<= 1) {  // inclusive prefix sums
      const int add = t >= off ? scan[t - off] : 0;
      __syncthreads();
      scan[t] += add;
      __syncthreads();
    }
    if (flag && positions) positions[b * seq + carry + scan[t] - 1] = static_cast<int>(i);
    __syncthreads();  // every thread has read carry
    if (t == Threads - 1) carry += scan[t];
    __syncthreads();
  }
  if (t == 0) count[b] = carry;
}

__device__ inline int64_t segment_start(int64_t s, int64_t n, int64_t m) {
  int64_t q = n / m, short_segments = m - n % m;
  return s * q + (s > short_segments ? s - short_segments : 0);
}

// grid (B * H * m); threads over the width.
template <typename T>
__global__ void segment_means_kernel(const T* x, const int* positions, const int* count,
                                     int64_t heads, int64_t seq, int64_t width, int64_t m, T* means,
                                     T* counts) {
  int64_t item = blockIdx.x;
  int64_t s = item % m, bh = item / m, b = bh / heads;
  int64_t n = count[b];
  int64_t r0 = segment_start(s, n, m), r1 = segment_start(s + 1, n, m);
  const T* xs = x + bh * seq * width;
  for (int64_t d = threadIdx.x; d < width; d += blockDim.x) {
    T acc = 0;
    for (int64_t r = r0; r < r1; ++r) acc += xs[positions[b * seq + r] * width + d];
    means[item * width + d] = r1 > r0 ? acc / static_cast<T>(r1 - r0) : T(0);
  }
  if (threadIdx.x == 0 && bh % heads == 0) counts[b * m + s] = static_cast<T>(r1 - r0);
}

// Adds into dx; each real position belongs to exactly one segment, so no two threads
// touch one element.
template <typename T>
__global__ void segment_means_backward_kernel(const T* dmeans, const int* positions, const int* count,
                                              int64_t heads, int64_t seq, int64_t width, int64_t m,
                                              T* dx) {
  int64_t item = blockIdx.x;
  int64_t s = item % m, bh = item / m, b = bh / heads;
  int64_t n = count[b];
  int64_t r0 = segment_start(s, n, m), r1 = segment_start(s + 1, n, m);
  if (r1 == r0) return;
  T inv = T(1) / static_cast<T>(r1 - r0);
  T* ds = dx + bh * seq * width;
  for (int64_t d = threadIdx.x; d < width; d += blockDim.x)
    for (int64_t r = r0; r < r1; ++r) ds[positions[b * seq + r] * width + d] += dmeans[item * width + d] * inv;
}

}  // namespace lra::core::cuda
