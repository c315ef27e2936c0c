#pragma once
// The depthwise convolution along the sequence on CUDA (core::depthwise_conv_seq and its
// backward), device code only so that the CPU emulation test runs it too.
//
// y (+)= the conv of mask * x (forward), or dx (+)= mask * the transposed conv of dy
// (transpose): padded rows are read as 0 going in and get nothing coming back.
// dw is a reduction over B x N x D per (head, tap): split into chunks of sequence rows,
// each chunk one block, then the chunks summed in their order by a second kernel, so the
// result does not depend on scheduling (a block per (head, tap) alone left most of the GPU
// idle: 70 blocks at H = 2, 35 taps).
#include <algorithm>
#include <cstdint>

#include "core/cuda/block_reduce.cuh"

namespace lra::core::cuda {

template <typename T>
__global__ void conv_kernel(const T* x, const T* w, const void* mask, bool mask_f32, int64_t heads,
                            int64_t seq, int64_t width, int64_t taps, int64_t n_total,
                            bool transpose, bool accumulate, T* y) {
  int64_t half = taps / 2;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < n_total; o += int64_t(gridDim.x) * blockDim.x) {
    int64_t d = o % width, n = (o / width) % seq, bh = o / (width * seq), b = bh / heads;
    const T* wh = w + (bh % heads) * taps;
    const T* xs = x + bh * seq * width;
    T acc = 0;
    if (!transpose || !mask || mask_keep(mask, mask_f32, b * seq + n)) {
      for (int64_t j = 0; j < taps; ++j) {
        // forward reads x[n + j - half]; the transposed (backward) conv reads dy[n - j + half].
        int64_t src = transpose ? n - j + half : n + j - half;
        if (src < 0 || src >= seq) continue;
        if (!transpose && mask && !mask_keep(mask, mask_f32, b * seq + src)) continue;
        acc += wh[j] * xs[src * width + d];
      }
    }
    y[o] = accumulate ? y[o] + acc : acc;
  }
}

// How conv_dw_partial_kernel splits the B·N sequence rows: a function of the sizes only.
struct ConvDwSplit {
  int64_t chunks, rows_per_chunk;
};
inline ConvDwSplit conv_dw_split(int64_t rows, int64_t head_taps) {
  // About 512 blocks in all (four per SM of an H100 is 528), at least 32 rows a chunk.
  int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(512 / std::max<int64_t>(head_taps, 1),
                                                          rows / 32));
  int64_t per = (rows + chunks - 1) / chunks;
  return {rows > 0 ? (rows + per - 1) / per : 1, std::max<int64_t>(per, 1)};
}

// grid (H * taps * chunks), block (h, j, c): partial[(h * taps + j) * chunks + c] =
// sum over the rows r = b * N + n of chunk c and all d of dy[b, h, n, d] (mask * x)[b, h, n + j - half, d].
template <typename T>
__global__ void conv_dw_partial_kernel(const T* x, const T* dy, const void* mask, bool mask_f32,
                                       int64_t batch, int64_t heads, int64_t seq, int64_t width,
                                       int64_t taps, ConvDwSplit split, T* partial) {
  __shared__ T shared[256];
  const int64_t c = blockIdx.x % split.chunks, hj = blockIdx.x / split.chunks;
  const int64_t h = hj / taps, j = hj % taps, half = taps / 2;
  const int64_t r0 = c * split.rows_per_chunk;
  const int64_t r1 = std::min<int64_t>(r0 + split.rows_per_chunk, batch * seq);
  T acc = 0;
  for (int64_t i = threadIdx.x; i < (r1 - r0) * width; i += blockDim.x) {
    const int64_t r = r0 + i / width, d = i % width, b = r / seq, n = r % seq;
    const int64_t src = n + j - half;
    if (src < 0 || src >= seq) continue;
    if (mask && !mask_keep(mask, mask_f32, b * seq + src)) continue;
    const int64_t base = (b * heads + h) * seq * width;
    acc += dy[base + n * width + d] * x[base + src * width + d];
  }
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// dw[i] (+)= the sum of partial[i * chunks ...] in chunk order.
template <typename T>
__global__ void conv_dw_finish_kernel(const T* partial, int64_t weights, int64_t chunks,
                                      bool accumulate, T* dw) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < weights;
       i += int64_t(gridDim.x) * blockDim.x) {
    T s = 0;
    for (int64_t c = 0; c < chunks; ++c) s += partial[i * chunks + c];
    dw[i] = accumulate ? dw[i] + s : s;
  }
}

}  // namespace lra::core::cuda
