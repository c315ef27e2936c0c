#pragma once
// CPU kernels of core::matmul_softmax and core::matmul_softmax_backward (core/ops.h),
// for products that suit the thin GEMM kernel (thin_gemm_suits). See matmul_softmax.cpp.
#include <cstdint>

#include "core/tensor.h"

namespace lra::core::cpu {

// p products of op(a) [m, k] and op(b) [k, n]; pa, pb = 1 (broadcast) or p.
struct ProductShape {
  int64_t m, n, k, p, pa, pb;
};

// y ([p, m, n]) = softmax(scale * op(a) op(b)) along n, key_mask [B, n] over the leading dim.
void matmul_softmax(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& key_mask,
                    double scale, const ProductShape& s, Tensor& y);
// dx = softmax_backward(y, op(a) op(b), scale).
void matmul_softmax_backward(const Tensor& y, const Tensor& a, bool ta, const Tensor& b, bool tb,
                             double scale, const ProductShape& s, Tensor& dx);

}  // namespace lra::core::cpu
