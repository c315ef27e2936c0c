// Launches of the CUDA kernels of core/ops_attention.h (see core/cuda/attention_kernels.h);
// the kernels themselves are in attention_op_kernels.cuh.
#include <algorithm>
#include <cmath>

#include "core/cuda/attention_kernels.h"
#include "core/cuda/attention_op_kernels.cuh"
#include "core/cuda/check.h"
#include "core/cuda/kernels.h"
#include "core/dispatch.h"

namespace lra::core::cuda {
namespace {

constexpr int threads = grid_stride_threads;
int grid_for(int64_t n) { return grid_stride_blocks(n); }

}  // namespace

void attn_unary(AttnUnary op, const Tensor& x, Tensor& y) {
  if (x.numel() == 0) return;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    unary_kernel<T><<<grid_for(x.numel()), threads>>>(op, x.data<T>(), x.numel(), y.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void attn_unary_backward(AttnUnary op, const Tensor& xy, const Tensor& dy, Tensor& dx) {
  if (xy.numel() == 0) return;
  LRA_DISPATCH_FLOAT(xy.dtype(), T, [&] {
    unary_backward_kernel<T><<<grid_for(xy.numel()), threads>>>(op, xy.data<T>(), dy.data<T>(),
                                                                xy.numel(), dx.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

namespace {
void mask_rows(const Tensor& x, const Tensor& mask, bool identity_rows, Tensor& y) {
  if (x.numel() == 0) return;
  int64_t heads = x.rank() == 3 ? 1 : x.dim(1), seq = x.dim(-2), width = x.dim(-1);
  bool mf32 = mask.dtype() == DType::f32;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    mask_rows_kernel<T><<<grid_for(x.numel()), threads>>>(x.data<T>(), mask.raw_data(), mf32,
                                                          heads, seq, width, x.numel(),
                                                          identity_rows, y.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}
}  // namespace

void mask_seq(const Tensor& x, const Tensor& key_mask, Tensor& y) { mask_rows(x, key_mask, false, y); }

void set_rows_identity(const Tensor& a, const Tensor& row_mask, Tensor& y) {
  mask_rows(a, row_mask, true, y);
}

namespace {
std::size_t pinv_shared_bytes(int64_t m, DType dtype) {
  std::size_t bytes = pinv_init_shared_bytes(m, dtype_size(dtype));
  int device = 0, limit = 0;
  LRA_CUDA_CHECK(cudaGetDevice(&device));
  LRA_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlock, device));
  LRA_CHECK(bytes <= static_cast<std::size_t>(limit),
            "pinv_init (cuda): matrices of {} x {} need {} bytes of shared memory, the device has {}",
            m, m, bytes, limit);
  return bytes;
}
}  // namespace

void pinv_init(const Tensor& a, Tensor& z0) {
  int64_t m = a.dim(-1);
  int64_t mats = m ? a.numel() / (m * m) : 0;
  if (mats == 0) return;
  std::size_t shared = pinv_shared_bytes(m, a.dtype());
  LRA_DISPATCH_FLOAT(a.dtype(), T, [&] {
    pinv_init_kernel<T>
        <<<static_cast<unsigned>(mats), pinv_init_threads, shared>>>(a.data<T>(), m, z0.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void pinv_init_backward(const Tensor& a, const Tensor& dz0, Tensor& da) {
  int64_t m = a.dim(-1);
  int64_t mats = m ? a.numel() / (m * m) : 0;
  if (mats == 0) return;
  std::size_t shared = pinv_shared_bytes(m, a.dtype());
  LRA_DISPATCH_FLOAT(a.dtype(), T, [&] {
    pinv_init_backward_kernel<T><<<static_cast<unsigned>(mats), pinv_init_threads, shared>>>(
        a.data<T>(), dz0.data<T>(), m, da.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void crop2d(const Tensor& x, Tensor& y) {
  if (y.numel() == 0) return;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    crop_kernel<T><<<grid_for(y.numel()), threads>>>(x.data<T>(), x.dim(1), y.dim(1), y.numel(),
                                                     y.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void crop2d_backward_add(Tensor& dx, const Tensor& dy) {
  if (dy.numel() == 0) return;
  LRA_DISPATCH_FLOAT(dx.dtype(), T, [&] {
    crop_backward_kernel<T><<<grid_for(dy.numel()), threads>>>(dx.data<T>(), dx.dim(1),
                                                               dy.data<T>(), dy.dim(1), dy.numel());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void attn_dropout_mask(double p, uint64_t seed, uint64_t offset, Tensor& y) {
  if (y.numel() == 0) return;
  cuda::fill_uniform(y, seed, offset, 0.0, 1.0);  // the same draws as core::fill_uniform on the CPU
  LRA_DISPATCH_FLOAT(y.dtype(), T, [&] {
    threshold_kernel<T><<<grid_for(y.numel()), threads>>>(
        y.data<T>(), y.numel(), static_cast<T>(p), static_cast<T>(1.0 / (1.0 - p)));
    LRA_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace lra::core::cuda
