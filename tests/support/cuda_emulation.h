#pragma once
// Runs CUDA kernel source on the CPU, for tests on machines without a GPU: one std::thread
// per CUDA thread, a std::barrier for __syncthreads, shuffles exchanged through the block,
// blocks one after another. Only what lra's kernels use (1-D grids and blocks, dynamic
// shared memory, __shfl_xor_sync). Slow (thousands of threads per launch): small shapes.
// Shared memory starts as 0xFF bytes (NaN in f32 and f64), so a read of an element no
// thread wrote shows in the results. Include this before any kernel header.
#include <barrier>
#include <cmath>
#include <cstdint>
#include <functional>
#include <math.h>
#include <thread>
#include <vector>

// The kernels' `#pragma unroll` lines are unknown to the host compiler: a test including
// this header is compiled with -Wno-unknown-pragmas (tests/CMakeLists.txt).

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(...)
#define __restrict__
#define __align__(n)

struct EmulatedDim3 {
  unsigned x = 0, y = 1, z = 1;
};
inline thread_local EmulatedDim3 threadIdx, blockIdx;
inline EmulatedDim3 blockDim, gridDim;

struct EmulatedBlock {
  std::barrier<>* barrier = nullptr;
  std::vector<unsigned char> shared;
  std::vector<double> exchange;  // one slot per thread for shuffles
};
inline thread_local EmulatedBlock* emulated_block = nullptr;

#define LRA_DYNAMIC_SHARED(name) unsigned char* name = emulated_block->shared.data()

inline void __syncthreads() { emulated_block->barrier->arrive_and_wait(); }

// Every thread of the block must call it (as every lane of a full-mask shuffle does).
template <typename T> T __shfl_xor_sync(unsigned, T v, int lane_mask, int width = 32) {
  const unsigned t = threadIdx.x;
  emulated_block->exchange[t] = static_cast<double>(v);
  __syncthreads();
  const unsigned lane = t % 32, segment = lane / width * width;
  const unsigned src = (t - lane) + segment + ((lane - segment) ^ static_cast<unsigned>(lane_mask));
  T r = static_cast<T>(emulated_block->exchange[src]);
  __syncthreads();
  return r;
}

namespace lra::test {

// kernel<<<grid, block, shared_bytes>>>(...) as emulate_launch(grid, block, shared_bytes,
// [&] { kernel(...); }).
inline void emulate_launch(unsigned grid, unsigned block, std::size_t shared_bytes,
                           const std::function<void()>& kernel) {
  gridDim = {grid, 1, 1};
  blockDim = {block, 1, 1};
  for (unsigned b = 0; b < grid; ++b) {
    EmulatedBlock state;
    std::barrier<> barrier(block);
    state.barrier = &barrier;
    state.shared.assign(shared_bytes, 0xFF);
    state.exchange.assign(block, 0.0);
    std::vector<std::thread> threads;
    threads.reserve(block);
    for (unsigned t = 0; t < block; ++t)
      threads.emplace_back([&, t] {
        threadIdx = {t, 0, 0};
        blockIdx = {b, 0, 0};
        emulated_block = &state;
        kernel();
      });
    for (auto& th : threads) th.join();
  }
}

}  // namespace lra::test
