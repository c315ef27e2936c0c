#pragma once
// Device helpers shared by the CUDA kernels: fixed-tree block and warp reductions
// (deterministic: the same tree whatever the data) and the key-mask test. Device code only, so the CPU
// emulation test can include it too.
#include <cstdint>

namespace lra::core::cuda {

// Fixed-tree block reductions; blockDim.x a power of two, `shared` one T per thread. Every
// thread gets the result.
template <typename T> __device__ inline T block_sum(T v, T* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  T r = shared[0];
  __syncthreads();
  return r;
}

template <typename T> __device__ inline T block_max(T v, T* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) shared[threadIdx.x] = fmax(shared[threadIdx.x], shared[threadIdx.x + s]);
    __syncthreads();
  }
  T r = shared[0];
  __syncthreads();
  return r;
}

// Butterfly warp reductions: every lane ends with the same value (a + b == b + a at each
// level), in an order fixed by the lane numbers alone.
template <typename T> __device__ inline T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <typename T> __device__ inline T warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Key mask element as "is a token", for f32 or f64 masks.
__device__ inline bool mask_keep(const void* mask, bool mask_f32, int64_t i) {
  return mask_f32 ? static_cast<const float*>(mask)[i] != 0.0f
                  : static_cast<const double*>(mask)[i] != 0.0;
}

}  // namespace lra::core::cuda
