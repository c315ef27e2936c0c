#pragma once
// Launch geometry of the elementwise grid-stride kernels of attention_op_kernels.cuh and
// random_op_kernels.cuh: 256-thread blocks, one block per 256 elements up to 65535 * 8
// blocks, beyond which each thread strides over the rest. Host arithmetic only, so the
// CPU emulation tests launch with the very geometry the .cu files use.
#include <algorithm>
#include <cstdint>

namespace lra::core::cuda {

constexpr int grid_stride_threads = 256;

inline int grid_stride_blocks(int64_t n) {
  const int64_t blocks = (n + grid_stride_threads - 1) / grid_stride_threads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65535LL * 8)));
}

}  // namespace lra::core::cuda

// for (i over this thread's elements of [0, n)), striding by the whole grid.
#define LRA_GRID_STRIDE(i, n)                                               \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)
