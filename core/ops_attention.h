#pragma once
// Extra primitive ops the attention backends are built from (beside core/ops.h): feature
// maps, sequence masking, the Nyström pseudo-inverse initialisation, block crops and
// dropout masks. Same conventions as core/ops.h: validation here, dispatch on the device
// (CPU kernels in core/cpu/attention_kernels.cpp, CUDA kernels in
// core/cuda/attention_ops.cu; an lra::Error for CUDA in a build without it), f32
// and f64, each forward with its backward beside it.
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace lra::core {

// ---------------------------------------------------------------- feature maps
// y = elu(x) + 1 = (x > 0 ? x + 1 : exp(x)), positive everywhere (linear attention).
Tensor elu_plus_one(const Tensor& x);
// dx = dy * (x > 0 ? 1 : exp(x)).
Tensor elu_plus_one_backward(const Tensor& x, const Tensor& dy);
// y = exp(x) elementwise; its backward needs only y: dx = dy * y.
Tensor exp(const Tensor& x);
Tensor exp_backward(const Tensor& y, const Tensor& dy);
// y = (x != 0 ? 1 / x : 0): normalisers of rows that attend to nothing stay finite.
Tensor reciprocal_or_zero(const Tensor& x);
// dx = -dy * y^2 where y = reciprocal_or_zero(x) (0 where x was 0).
Tensor reciprocal_or_zero_backward(const Tensor& y, const Tensor& dy);

// ---------------------------------------------------------------- sequence masking
// Rows of padded positions set to exactly 0 (selected, not multiplied, so NaN/Inf in
// padding never leaks): x is [B, H, N, C] or [B, N, C], key_mask is [B, N] (0 = padding).
// It is linear and self-adjoint, so it is also its own backward.
Tensor mask_seq(const Tensor& x, const Tensor& key_mask);

// Rows i of each square matrix of a ([B, H, m, m] or [B, m, m]) whose row_mask[b, i] is 0
// become the unit row e_i; other rows are copied. Its backward zeroes the same rows of
// the gradient, which is mask_seq(dy, row_mask).
Tensor set_rows_identity(const Tensor& a, const Tensor& row_mask);

// ---------------------------------------------------------------- pseudo-inverse init
// Per square matrix A of a ([..., m, m]): Z0 = Aᵀ / (‖A‖₁ ‖A‖∞), with ‖A‖₁ the largest
// absolute column sum and ‖A‖∞ the largest absolute row sum of that matrix alone.
Tensor pinv_init(const Tensor& a);
// Gradient w.r.t. a of pinv_init given dz0. The norms are maxima: the gradient goes to
// the first maximising column / row (a subgradient where there is a tie) and uses
// sign(A) (0 at 0) for the absolute values.
Tensor pinv_init_backward(const Tensor& a, const Tensor& dz0);

// ---------------------------------------------------------------- pseudo-inverse iteration
// The Nyströmformer iteration on each square matrix A of a ([..., m, m]) from Z0 = z0,
// `iters` times:  P = A Z,  U1 = 7P − P P,  U2 = 15P − P U1,  Z' = 13/4 Z − 1/4 Z U2
// (= ¼ Z (13I − P (15I − P (7I − P)))). `steps[j]` keeps what step j started from and
// computed, which is all its backward reads.
struct PinvStep {
  Tensor z, p, u1, u2;
};
struct PinvIteration {
  Tensor z;  // the last iterate
  std::vector<PinvStep> steps;
};
PinvIteration pinv_iterate(const Tensor& a, const Tensor& z0, int64_t iters);
// Backward of pinv_iterate given d_z (gradient of the last iterate): adds dA into d_a
// and returns the gradient w.r.t. z0.
Tensor pinv_iterate_backward(const Tensor& a, const std::vector<PinvStep>& steps, const Tensor& d_z,
                             Tensor& d_a);

// ---------------------------------------------------------------- crops
// Top-left rows x cols block of a rank-2 tensor, copied (e.g. the first N columns of a
// Linformer projection learned for max_len).
Tensor crop2d(const Tensor& x, int64_t rows, int64_t cols);
// Adds dy ([rows, cols]) into the top-left block of dx (the backward of crop2d).
void crop2d_backward_add(Tensor& dx, const Tensor& dy);

// ---------------------------------------------------------------- dropout
// Inverted-dropout multipliers: element i is 0 with probability p, else 1 / (1 - p),
// drawn from the counter-based stream (seed, offset + i). 0 <= p < 1.
Tensor dropout_mask(const Shape& shape, double p, uint64_t seed, uint64_t offset,
                    DType dtype = DType::f32, Device device = Device::cpu);

}  // namespace lra::core
