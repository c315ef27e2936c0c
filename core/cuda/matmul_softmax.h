#pragma once
// CUDA kernels of core::matmul_softmax and core::softmax_scores_backward for rows of at most
// 256 scores (core/cuda/matmul_softmax_kernels.cuh), with the signatures of the CPU kernels
// (core/cpu/matmul_softmax.h). core/ops.cpp decides which calls come here.
#include <cstdint>

#include "core/cpu/matmul_softmax.h"
#include "core/tensor.h"

namespace lra::core::cuda {

using cpu::ProductShape;

// Whether rows of `cols` scores are short enough for the fused kernels and this device's
// shared memory per block holds their tiles (for the dtype).
bool matmul_softmax_fits(int64_t cols, DType dtype);
bool softmax_scores_backward_fits(int64_t cols, DType dtype);

// y ([p, m, n]) = softmax(scale * op(a) op(b)) along n; key_mask [B, n] over the leading dim.
// Needs matmul_softmax_fits(n), k >= 1 and p, m >= 1.
void matmul_softmax(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& key_mask,
                    double scale, const ProductShape& s, Tensor& y);
// d_q = dS k, d_k = dSᵀ q with dS = softmax_backward(y, g hᵀ, scale) per matrix. Needs
// softmax_scores_backward_fits(y.dim(-1)), and every dimension >= 1.
void softmax_scores_backward(const Tensor& y, const Tensor& q, const Tensor& k, const Tensor& g,
                             const Tensor& h, double scale, Tensor& d_q, Tensor& d_k);

}  // namespace lra::core::cuda
