#pragma once
// The optimizer step over a list of tensors in a few launches (core::global_norm_scale,
// core::adamw_update_all): device code and the host-side launch plan only (launches are in
// core/cuda/train_ops.cu), so that the CPU emulation test runs the very same kernels.
//
// A launch takes up to `capacity` tensors. Their pointers and sizes travel in a kernel
// parameter struct passed by value (well inside the 4 KiB parameter limit), with a prefix
// table of block counts: each block takes one fixed chunk of one tensor, found by a binary
// search of the table. No pointer table is uploaded, nothing waits for the host, and no
// float atomics are used. A longer list is more launches (in list order); empty tensors get
// no blocks.
//
// The gradient's sum of squares is deterministic: block b of the whole plan (launches one
// after another) writes the partial sum of its chunk to partial[b] (a fixed tree over a
// fixed chunk: the same bits every run) and whether the chunk is its tensor's first; one
// single-thread kernel then adds the partials per tensor in chunk order and the tensor sums
// in list order. That is the order of the per-tensor reduction this replaced (one
// sum_squares kernel and one in-order sum per tensor), so the norm has its bits.
#include <cstdint>
#include <vector>

#include "core/cuda/block_reduce.cuh"

namespace lra::core::cuda::multi_tensor {

constexpr int threads = 256;                // per block (a power of two: block_sum)
constexpr int capacity = 48;                // tensors per launch
constexpr int64_t squares_chunk = 1 << 14;  // elements per partial sum of squares
constexpr int64_t adamw_chunk = 2048;       // elements per AdamW block (8 per thread)

// Blocks [first_block[s], first_block[s + 1]) of a launch take slot s, one chunk each;
// `count` slots are used, every one with at least one block.
struct ChunkTable {
  int32_t first_block[capacity + 1];
  int32_t count;
  // The slot of block b: the last s with first_block[s] <= b (b < first_block[count]).
  __device__ int slot_of(int32_t b) const {
    int lo = 0, hi = count - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (first_block[mid] <= b)
        lo = mid;
      else
        hi = mid - 1;
    }
    return lo;
  }
};

// Host side: one launch of the plan, slot s taking the tensor list[index[s]].
struct Launch {
  ChunkTable table;
  int index[capacity];
  int32_t blocks() const { return table.first_block[table.count]; }
};

// The launches for tensors of `sizes` elements cut into chunks of `chunk`: list order, at
// most `capacity` tensors per launch, no launch without blocks. (A launch's blocks fit in
// int32 for any tensors that fit in a device's memory: 48 x 2^31 chunks of 2048 elements.)
inline std::vector<Launch> plan(const std::vector<int64_t>& sizes, int64_t chunk) {
  std::vector<Launch> out;
  Launch cur{};
  int64_t blocks = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const int64_t b = (sizes[i] + chunk - 1) / chunk;
    if (b == 0) continue;
    if (cur.table.count == capacity) {
      out.push_back(cur);
      cur = Launch{};
      blocks = 0;
    }
    const int s = cur.table.count++;
    cur.index[s] = static_cast<int>(i);
    cur.table.first_block[s] = static_cast<int32_t>(blocks);
    blocks += b;
    cur.table.first_block[s + 1] = static_cast<int32_t>(blocks);
  }
  if (cur.table.count > 0) out.push_back(cur);
  return out;
}

// ---------------------------------------------------------------- sum of squares
template <typename T>
struct SquaresArgs {
  const T* x[capacity];
  int64_t n[capacity];
  ChunkTable table;
};

// Block b: partial[b] = the sum of squares (in double) of its chunk, by a thread-strided
// loop and block_sum's fixed tree; first[b] = 1 when the chunk is its tensor's first.
// (partial and first point at this launch's first block in the plan's scratch.)
template <typename T>
__global__ void __launch_bounds__(threads)
    squares_partials_kernel(const SquaresArgs<T> a, double* partial, unsigned char* first) {
  __shared__ double shared[threads];
  const int32_t b = static_cast<int32_t>(blockIdx.x);
  const int s = a.table.slot_of(b);
  const int64_t k = b - a.table.first_block[s];
  const int64_t begin = k * squares_chunk;
  const int64_t end = a.n[s] < begin + squares_chunk ? a.n[s] : begin + squares_chunk;
  const T* x = a.x[s];
  double acc = 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x)
    acc += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) {
    partial[b] = acc;
    first[b] = k == 0 ? 1 : 0;
  }
}

// One thread: result = [norm, scale] from the `count` partials of the whole plan, norm =
// sqrt(sum), scale = clip / (norm + 1e-6) when clip > 0 and norm > clip, else 1; NaN
// when the norm is not finite (it poisons the update; the trainer checks the norm when it
// reads it). A template so that the header defines it inline.
template <int = 0>
__global__ void norm_scale_kernel(const double* partial, const unsigned char* first, int64_t count,
                                  double clip, double* result) {
  double total = 0, tensor = 0;
  for (int64_t k = 0; k < count; ++k) {
    if (first[k]) {
      total += tensor;
      tensor = 0;
    }
    tensor += partial[k];
  }
  total += tensor;
  const double norm = sqrt(total);
  double scale = 1.0;
  if (!isfinite(norm))
    scale = nan("");
  else if (clip > 0 && norm > clip)
    scale = clip / (norm + 1e-6);
  result[0] = norm;
  result[1] = scale;
}

// ---------------------------------------------------------------- AdamW
template <typename T>
struct AdamWArgs {
  T* w[capacity];
  const T* g[capacity];
  T* m[capacity];
  T* v[capacity];
  int64_t n[capacity];
  T decay[capacity];  // lr * weight_decay, or 0 for a tensor without weight decay
  ChunkTable table;
};

// The step's scalars, as core/cpu/train_kernels.cpp computes them (on the host, in double).
template <typename T>
struct AdamWScalars {
  T beta1, beta2;
  T grad_scale;                     // used when grad_scale_device is null
  const double* grad_scale_device;  // else element 1 of it ([norm, scale])
  T step_size;                      // lr / (1 - beta1^t)
  T inv_c2;                         // 1 / (1 - beta2^t)
  T eps;
};

// Block b updates its chunk of its tensor, element by element as the CPU kernel does.
template <typename T>
__global__ void __launch_bounds__(threads)
    adamw_kernel(const AdamWArgs<T> a, const AdamWScalars<T> c) {
  const int32_t b = static_cast<int32_t>(blockIdx.x);
  const int s = a.table.slot_of(b);
  const int64_t begin = (b - a.table.first_block[s]) * adamw_chunk;
  const int64_t end = a.n[s] < begin + adamw_chunk ? a.n[s] : begin + adamw_chunk;
  const T scale = c.grad_scale_device ? static_cast<T>(c.grad_scale_device[1]) : c.grad_scale;
  const T decay = a.decay[s];
  T* w = a.w[s];
  const T* g = a.g[s];
  T* m = a.m[s];
  T* v = a.v[s];
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const T gi = g[i] * scale;
    const T mi = c.beta1 * m[i] + (T(1) - c.beta1) * gi;
    const T vi = c.beta2 * v[i] + (T(1) - c.beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const T upd = c.step_size * mi / (sqrt(vi * c.inv_c2) + c.eps);
    w[i] = w[i] - decay * w[i] - upd;
  }
}

}  // namespace lra::core::cuda::multi_tensor
