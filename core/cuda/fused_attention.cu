// Launches of the flash-style softmax attention kernels (core/cuda/fused_attention_kernels.cuh).
#include "core/cuda/fused_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/cuda/check.h"
#include "core/cuda/flash_bf16_kernels.cuh"
#include "core/cuda/flash_tf32_kernels.cuh"
#include "core/cuda/fused_attention_kernels.cuh"
#include "core/cuda/kernels.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "core/precision.h"

namespace lra::core::cuda {
namespace {

using namespace flash;

// ------------------------------------------------------------------ launch
// Kernels above 48 KiB of dynamic shared memory must opt in, once per kernel.
template <auto Kernel, int Threads = block_threads, typename... Args>
void launch(size_t smem, int64_t blocks, Args... args) {
  LRA_CHECK(smem <= max_shared_bytes_per_block(),
            "fused_softmax_attention (cuda): this head dim's tiles need {} bytes of shared memory "
            "per block, the device allows {}; use attention kernel: composed",
            smem, max_shared_bytes_per_block());
  static const bool opted_in = [smem] {
    LRA_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
    return true;
  }();
  (void)opted_in;
  LRA_CHECK(blocks <= INT32_MAX, "fused_softmax_attention: {} thread blocks exceed the grid limit",
            blocks);
  Kernel<<<static_cast<unsigned>(blocks), Threads, smem>>>(args...);
  LRA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void fused_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                     double scale, const AttentionDropout& dropout, Tensor& out, Tensor& lse) {
  if (lse.numel() == 0) return;  // no rows (a head dim of 0 still has lse = log #real keys)
  const Geometry g = geometry_of(q, key_mask);
  const Dropout dr = dropout_of(dropout);
  const int64_t bh = q.dim(0) * q.dim(1);
  if (q.dtype() == DType::bf16) {
    const int64_t tiles = (g.n + mma_rows - 1) / mma_rows;
    auto run = [&](auto dmax) {
      constexpr int DMAX = decltype(dmax)::value;
      launch<forward_bf16_kernel<DMAX>, mma_threads>(
          forward_bf16_smem<DMAX>(), bh * tiles, q.data<bf16>(), k.data<bf16>(), v.data<bf16>(),
          g, static_cast<float>(scale), dr, tiles, out.data<bf16>(), lse.data<float>());
    };
    with_head_dim_tile(g.d, run);
    return;
  }
  if (q.dtype() == DType::f32 && matmul_precision() == MatmulPrecision::tf32) {
    const int64_t tiles = (g.n + mma_rows - 1) / mma_rows;
    auto run = [&](auto dmax) {
      constexpr int DMAX = decltype(dmax)::value;
      launch<forward_tf32_kernel<DMAX>, mma_threads>(
          forward_tf32_smem<DMAX>(), bh * tiles, q.data<float>(), k.data<float>(),
          v.data<float>(), g, static_cast<float>(scale), dr, tiles, out.data<float>(),
          lse.data<float>());
    };
    with_head_dim_tile(g.d, run);
    return;
  }
  LRA_DISPATCH_FLOAT(q.dtype(), T, [&] {
    const int64_t tiles = (g.n + tile_rows<T>() - 1) / tile_rows<T>();
    auto run = [&](auto dmax) {
      constexpr int DMAX = decltype(dmax)::value;
      launch<forward_kernel<T, DMAX>>(forward_smem<T, DMAX>(), bh * tiles, q.data<T>(),
                                      k.data<T>(), v.data<T>(), g, static_cast<T>(scale), dr,
                                      tiles, out.data<T>(), lse.data<T>());
    };
    with_head_dim_tile(g.d, run);
  });
}

void fused_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& key_mask, double scale,
                              const AttentionDropout& dropout, const Tensor& lse,
                              const Tensor& out, const Tensor& d_out, Tensor& dq, Tensor& dk,
                              Tensor& dv) {
  if (q.numel() == 0) return;
  const Geometry g = geometry_of(q, key_mask);
  const Dropout dr = dropout_of(dropout);
  const int64_t bh = q.dim(0) * q.dim(1), rows = bh * g.n;
  if (q.dtype() == DType::bf16) {
    Tensor delta = Tensor::empty(Shape{rows}, DType::f32, q.device());
    constexpr int warps = mma_threads / 32;
    launch<row_dot_bf16_kernel<warps>, mma_threads>(0, (rows + warps - 1) / warps,
                                                    d_out.data<bf16>(), out.data<bf16>(), rows,
                                                    g.d, delta.data<float>());
    const int64_t tiles = (g.n + mma_keys - 1) / mma_keys;
    auto run = [&](auto dmax) {
      constexpr int DMAX = decltype(dmax)::value;
      const float* dp = delta.data<float>();
      launch<dkdv_bf16_kernel<DMAX>, mma_threads>(
          dkdv_bf16_smem<DMAX>(), bh * tiles, q.data<bf16>(), k.data<bf16>(), v.data<bf16>(), g,
          static_cast<float>(scale), dr, lse.data<float>(), dp, d_out.data<bf16>(), tiles,
          dk.data<bf16>(), dv.data<bf16>());
      launch<dq_bf16_kernel<DMAX>, mma_threads>(
          dq_bf16_smem<DMAX>(), bh * tiles, q.data<bf16>(), k.data<bf16>(), v.data<bf16>(), g,
          static_cast<float>(scale), dr, lse.data<float>(), dp, d_out.data<bf16>(), tiles,
          dq.data<bf16>());
    };
    with_head_dim_tile(g.d, run);
    return;
  }
  Tensor delta = Tensor::empty(Shape{rows}, q.dtype(), q.device());
  row_dot(d_out, out, delta);  // delta_i = dO_i · O_i (core/cuda/kernels.h)
  LRA_DISPATCH_FLOAT(q.dtype(), T, [&] {
    if constexpr (std::is_same_v<T, float>) {
      if (matmul_precision() == MatmulPrecision::tf32) {
        const int64_t tiles = (g.n + mma_keys - 1) / mma_keys;
        auto run = [&](auto dmax) {
          constexpr int DMAX = decltype(dmax)::value;
          const float* dp = delta.data<float>();
          launch<dkdv_tf32_kernel<DMAX>, mma_threads>(
              backward_tf32_smem<DMAX>(), bh * tiles, q.data<float>(), k.data<float>(),
              v.data<float>(), g, static_cast<float>(scale), dr, lse.data<float>(), dp,
              d_out.data<float>(), tiles, dk.data<float>(), dv.data<float>());
          launch<dq_tf32_kernel<DMAX>, mma_threads>(
              backward_tf32_smem<DMAX>(), bh * tiles, q.data<float>(), k.data<float>(),
              v.data<float>(), g, static_cast<float>(scale), dr, lse.data<float>(), dp,
              d_out.data<float>(), tiles, dq.data<float>());
        };
        with_head_dim_tile(g.d, run);
        return;
      }
    }
    const int64_t tiles = (g.n + tile_rows<T>() - 1) / tile_rows<T>();
    auto run = [&](auto dmax) {
      constexpr int DMAX = decltype(dmax)::value;
      const T* dp = delta.data<T>();
      launch<dkdv_kernel<T, DMAX>>(dkdv_smem<T, DMAX>(), bh * tiles, q.data<T>(), k.data<T>(),
                                   v.data<T>(), g, static_cast<T>(scale), dr, lse.data<T>(), dp,
                                   d_out.data<T>(), tiles, dk.data<T>(), dv.data<T>());
      launch<dq_kernel<T, DMAX>>(dq_smem<T, DMAX>(), bh * tiles, q.data<T>(), k.data<T>(),
                                 v.data<T>(), g, static_cast<T>(scale), dr, lse.data<T>(), dp,
                                 d_out.data<T>(), tiles, dq.data<T>());
    };
    with_head_dim_tile(g.d, run);
  });
}

}  // namespace lra::core::cuda
