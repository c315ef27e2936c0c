#pragma once
// CPU kernels of core::matmul_softmax and core::softmax_scores_backward (core/ops.h), for
// products that suit the thin GEMM kernel (thin_gemm_suits). See matmul_softmax.cpp.
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
// dS = softmax_backward(y, g hᵀ, scale) per matrix, then d_q = dS k, d_k = dSᵀ q.
void softmax_scores_backward(const Tensor& y, const Tensor& q, const Tensor& k, const Tensor& g,
                             const Tensor& h, double scale, Tensor& d_q, Tensor& d_k);

}  // namespace lra::core::cpu
