#pragma once
// The exact GELU, 0.5 x (1 + erf(x / sqrt 2)), and its slope, in device code: one
// definition for core::gelu (ops.cu) and the fused bias + GELU of the encoder's FFN
// (train_op_kernels.cuh), so the two give the same bits.

namespace lra::core::cuda {

template <typename T> __device__ T gelu_value(T x) {
  return T(0.5) * x * (T(1) + erf(x * T(0.70710678118654752440)));
}

template <typename T> __device__ T gelu_slope(T x) {
  return T(0.5) * (T(1) + erf(x * T(0.70710678118654752440))) +
         x * T(0.3989422804014327) * exp(T(-0.5) * x * x);
}

}  // namespace lra::core::cuda
