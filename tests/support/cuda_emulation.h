#pragma once
// Runs CUDA kernel source on the CPU, for tests on machines without a GPU: one std::thread
// per CUDA thread, a std::barrier for __syncthreads, shuffles exchanged through the block,
// blocks one after another. Only what lra's kernels use (1-D blocks, 1-D and 2-D grids,
// static and dynamic shared memory, __shfl_xor_sync and __shfl_sync, the TF32 and bf16 mma
// of core/cuda/mma_*.cuh).
// Slow (thousands of threads per launch): small shapes.
// Shared memory starts as 0xFF bytes (NaN in f32 and f64), so a read of an element no
// thread wrote shows in the results. Include this before any kernel header.
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <math.h>
#include <thread>
#include <vector>

#include "core/bfloat16.h"

// The kernels' `#pragma unroll` lines are unknown to the host compiler: a test including
// this header is compiled with -Wno-unknown-pragmas (tests/CMakeLists.txt).

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(...)
#define __restrict__
#define __align__(n)
// Blocks run one after another, so a function-local static is one block's shared memory.
#define __shared__ static
using std::fmax;

struct EmulatedDim3 {
  unsigned x = 0, y = 1, z = 1;
};
inline thread_local EmulatedDim3 threadIdx, blockIdx;
inline EmulatedDim3 blockDim, gridDim;

struct EmulatedBlock {
  std::barrier<>* barrier = nullptr;
  std::vector<unsigned char> shared;
  std::vector<double> exchange;       // one slot per thread for shuffles
  std::vector<uint32_t> fragments;    // six per thread: an mma's A and B fragments
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

// core/cuda/mma_tf32.cuh on the CPU: the same fragment layout (see there), products of TF32
// values (exact in fp32) summed in fp32.
namespace lra::core::cuda {

inline uint32_t to_tf32(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7f800000u) != 0x7f800000u) u += 0x1000u;  // round half away from zero
  return u & 0xffffe000u;
}

inline float round_tf32(float x) {
  const uint32_t u = to_tf32(x);
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint32_t tf32_bits(float rounded) {
  uint32_t u;
  std::memcpy(&u, &rounded, sizeof u);
  return u;
}

inline void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  const unsigned t = threadIdx.x, lane = t % 32, warp0 = t - lane;
  uint32_t* mine = emulated_block->fragments.data() + 6 * t;
  for (int i = 0; i < 4; ++i) mine[i] = a[i];
  mine[4] = b[0];
  mine[5] = b[1];
  __syncthreads();
  auto value = [](uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  };
  const uint32_t* frags = emulated_block->fragments.data() + 6 * warp0;
  auto a_at = [&](int row, int col) {  // A (16 x 8)
    const int owner = (row % 8) * 4 + col % 4, reg = (row >= 8 ? 1 : 0) + (col >= 4 ? 2 : 0);
    return value(frags[6 * owner + reg]);
  };
  auto b_at = [&](int kk, int col) {  // B (8 x 8)
    const int owner = col * 4 + kk % 4, reg = kk >= 4 ? 1 : 0;
    return value(frags[6 * owner + 4 + reg]);
  };
  const int g = static_cast<int>(lane / 4), tq = static_cast<int>(lane % 4);
  for (int e = 0; e < 4; ++e) {
    const int row = g + (e >= 2 ? 8 : 0), col = 2 * tq + (e % 2);
    float acc = 0.0f;
    for (int kk = 0; kk < 8; ++kk) acc += a_at(row, kk) * b_at(kk, col);
    d[e] += acc;
  }
  __syncthreads();
}

// core/cuda/mma_bf16.cuh on the CPU: the same fragment layout (see there); products of
// bf16 values (exact in fp32) summed in fp32.
inline uint32_t pack_bf16x2(float lo, float hi) { return pack_bf16(to_bf16(lo), to_bf16(hi)); }

inline void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  const unsigned t = threadIdx.x, lane = t % 32, warp0 = t - lane;
  uint32_t* mine = emulated_block->fragments.data() + 6 * t;
  for (int i = 0; i < 4; ++i) mine[i] = a[i];
  mine[4] = b[0];
  mine[5] = b[1];
  __syncthreads();
  const uint32_t* frags = emulated_block->fragments.data() + 6 * warp0;
  auto half = [](uint32_t reg, int which) {
    return to_float(bf16{static_cast<uint16_t>(which ? reg >> 16 : reg & 0xffffu)});
  };
  auto a_at = [&](int row, int col) {  // A (16 x 16)
    const int owner = (row % 8) * 4 + (col % 8) / 2, reg = (row >= 8 ? 1 : 0) + (col >= 8 ? 2 : 0);
    return half(frags[6 * owner + reg], col % 2);
  };
  auto b_at = [&](int kk, int col) {  // B (16 x 8)
    const int owner = col * 4 + (kk % 8) / 2, reg = kk >= 8 ? 1 : 0;
    return half(frags[6 * owner + 4 + reg], kk % 2);
  };
  const int g = static_cast<int>(lane / 4), tq = static_cast<int>(lane % 4);
  for (int e = 0; e < 4; ++e) {
    const int row = g + (e >= 2 ? 8 : 0), col = 2 * tq + (e % 2);
    float acc = 0.0f;
    for (int kk = 0; kk < 16; ++kk) acc += a_at(row, kk) * b_at(kk, col);
    d[e] += acc;
  }
  __syncthreads();
}

// __shfl_sync (core/cuda/random_op_kernels.cuh): lane srcLane % width of this thread's
// width-lane segment. Every thread of the block must call it, as for __shfl_xor_sync.
template <typename T> T __shfl_sync(unsigned, T v, int src_lane, int width = 32) {
  const unsigned t = threadIdx.x;
  emulated_block->exchange[t] = static_cast<double>(v);
  __syncthreads();
  const unsigned lane = t % 32, segment = lane / width * width;
  const unsigned src = (t - lane) + segment + static_cast<unsigned>(src_lane) % width;
  T r = static_cast<T>(emulated_block->exchange[src]);
  __syncthreads();
  return r;
}

}  // namespace lra::core::cuda

namespace lra::test {

// kernel<<<dim3 grid, dim3 block, shared_bytes>>>(...) as emulate_launch({gx, gy, gz},
// {bx, by, bz}, shared_bytes, [&] { kernel(...); }) (masked_mean's (32, 8) blocks over a
// (columns, batch) grid). Threads are numbered x fastest, as on the GPU; blocks run one
// after another, x fastest. The shuffles and mma above exchange by threadIdx.x alone:
// use them with 1-D blocks only.
inline void emulate_launch(EmulatedDim3 grid, EmulatedDim3 block, std::size_t shared_bytes,
                           const std::function<void()>& kernel) {
  gridDim = grid;
  blockDim = block;
  const unsigned count = block.x * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        EmulatedBlock state;
        std::barrier<> barrier(count);
        state.barrier = &barrier;
        state.shared.assign(shared_bytes, 0xFF);
        state.exchange.assign(count, 0.0);
        state.fragments.assign(6 * std::size_t{count}, 0u);
        std::vector<std::thread> threads;
        threads.reserve(count);
        for (unsigned t = 0; t < count; ++t)
          threads.emplace_back([&, t] {
            threadIdx = {t % block.x, t / block.x % block.y, t / (block.x * block.y)};
            blockIdx = {bx, by, bz};
            emulated_block = &state;
            kernel();
          });
        for (auto& th : threads) th.join();
      }
}

// kernel<<<grid, block, shared_bytes>>>(...) as emulate_launch(grid, block, shared_bytes,
// [&] { kernel(...); }).
inline void emulate_launch(unsigned grid, unsigned block, std::size_t shared_bytes,
                           const std::function<void()>& kernel) {
  emulate_launch(EmulatedDim3{grid, 1, 1}, EmulatedDim3{block, 1, 1}, shared_bytes, kernel);
}

// A 2-D grid of 1-D blocks (core/cuda/random_op_kernels.cuh):
// kernel<<<dim3(grid_x, grid_y), block, shared_bytes>>>(...).
inline void emulate_launch_2d(unsigned grid_x, unsigned grid_y, unsigned block,
                              std::size_t shared_bytes, const std::function<void()>& kernel) {
  emulate_launch(EmulatedDim3{grid_x, grid_y, 1}, EmulatedDim3{block, 1, 1}, shared_bytes, kernel);
}

}  // namespace lra::test
