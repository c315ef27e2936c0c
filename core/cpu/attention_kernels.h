#pragma once
// CPU kernels behind core/ops_attention.h (validated and allocated by the dispatching op).
#include <vector>

#include "core/tensor.h"

namespace lra::core {
struct PinvStep;  // core/ops_attention.h (not included: its exp() would shadow CUDA's in .cu files)
}

namespace lra::core::cpu {

enum class AttnUnary { elu_plus_one, exp, reciprocal_or_zero };
void attn_unary(AttnUnary op, const Tensor& x, Tensor& y);
// elu_plus_one: reads x; exp and reciprocal_or_zero: read y (the forward output).
void attn_unary_backward(AttnUnary op, const Tensor& x_or_y, const Tensor& dy, Tensor& dx);

void mask_seq(const Tensor& x, const Tensor& key_mask, Tensor& y);
void set_rows_identity(const Tensor& a, const Tensor& row_mask, Tensor& y);
void pinv_init(const Tensor& a, Tensor& z0);
void pinv_init_backward(const Tensor& a, const Tensor& dz0, Tensor& da);
// core/cpu/pinv_iteration.cpp: every step of one matrix in one thread, in cache. steps
// arrive allocated; z is the last iterate.
void pinv_iterate(const Tensor& a, const Tensor& z0, std::vector<PinvStep>& steps, Tensor& z);
void pinv_iterate_backward(const Tensor& a, const std::vector<PinvStep>& steps, const Tensor& d_z,
                           Tensor& d_a, Tensor& d_z0);
void crop2d(const Tensor& x, Tensor& y);
void crop2d_backward_add(Tensor& dx, const Tensor& dy);
void attn_dropout_mask(double p, uint64_t seed, uint64_t offset, Tensor& y);

}  // namespace lra::core::cpu
