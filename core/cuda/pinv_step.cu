// Launches of the one-block-per-matrix pseudo-inverse step (core/cuda/pinv_step_kernels.cuh).
#include <algorithm>

#include "core/cuda/attention_kernels.h"
#include "core/cuda/check.h"
#include "core/cuda/pinv_step_kernels.cuh"
#include "core/dispatch.h"
#include "core/error.h"
#include "core/ops_attention.h"

namespace lra::core::cuda {
namespace {

using namespace pinv;

// The shared memory the step kernels may use: 200 KiB or the device's opt-in limit.
size_t usable_smem() { return std::min(smem_limit, max_shared_bytes_per_block()); }

template <auto Kernel, typename... Args>
void launch(int64_t blocks, size_t smem, Args... args) {
  static const bool opted_in = [] {
    LRA_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(usable_smem())));
    return true;
  }();
  (void)opted_in;
  if (blocks == 0) return;
  LRA_CHECK(blocks <= INT32_MAX, "pinv step: {} matrices exceed the grid limit", blocks);
  Kernel<<<static_cast<unsigned>(blocks), side * side, smem>>>(args...);
  LRA_CUDA_CHECK_LAUNCH();
}

int64_t matrices(const Tensor& a) {
  const int64_t mm = a.dim(-1) * a.dim(-1);
  return mm ? a.numel() / mm : 0;
}

}  // namespace

bool pinv_step_fits(int64_t m, DType dtype) {
  return m >= 1 && m <= max_m && smem_bytes(m, dtype_size(dtype), backward_buffers) <= usable_smem();
}

void pinv_step(const Tensor& a, const Tensor& z, Tensor& p, Tensor& u1, Tensor& u2,
               Tensor& z_next) {
  const int m = static_cast<int>(a.dim(-1));
  LRA_DISPATCH_FLOAT(a.dtype(), T, [&] {
    launch<step_kernel<T>>(matrices(a), smem_bytes(m, sizeof(T), forward_buffers), m,
                           a.data<T>(), z.data<T>(), p.data<T>(), u1.data<T>(), u2.data<T>(),
                           z_next.data<T>());
  });
}

void pinv_step_backward(const Tensor& a, const PinvStep& s, const Tensor& d_next, Tensor& d_a,
                        Tensor& d_z) {
  const int m = static_cast<int>(a.dim(-1));
  LRA_DISPATCH_FLOAT(a.dtype(), T, [&] {
    launch<step_backward_kernel<T>>(matrices(a), smem_bytes(m, sizeof(T), backward_buffers), m,
                                    a.data<T>(), s.z.data<T>(), s.p.data<T>(), s.u1.data<T>(),
                                    s.u2.data<T>(), d_next.data<T>(), d_a.data<T>(),
                                    d_z.data<T>());
  });
}

}  // namespace lra::core::cuda
