#pragma once
// The exact GELU, 0.5 x (1 + erf(x / sqrt 2)), and its slope, on the CPU: one definition
// for core::gelu (elementwise.cpp) and the fused bias + GELU of the encoder's FFN
// (train_kernels.cpp). The value has the same bits in both; the slope's last bit may
// differ, as the two files are compiled with different contraction of a * b + c.
#include <cmath>

namespace lra::core::cpu {

template <typename T> T gelu_value(T x) {
  return T(0.5) * x * (T(1) + std::erf(x * static_cast<T>(M_SQRT1_2)));
}

template <typename T> T gelu_slope(T x) {
  const T inv_sqrt_2pi = static_cast<T>(0.3989422804014327);
  return T(0.5) * (T(1) + std::erf(x * static_cast<T>(M_SQRT1_2))) +
         x * inv_sqrt_2pi * std::exp(T(-0.5) * x * x);
}

}  // namespace lra::core::cpu
