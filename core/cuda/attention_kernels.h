#pragma once
// CUDA kernels behind core/ops_attention.h, with the same signatures and semantics as
// core/cpu/attention_kernels.h (inputs validated and outputs allocated by the
// dispatching op). Deterministic: every output element (or matrix) is computed by one
// fixed loop or a fixed reduction tree, no atomics.
#include <cstdint>

#include "core/cpu/attention_kernels.h"
#include "core/tensor.h"

namespace lra::core {
struct PinvStep;  // core/ops_attention.h (not included: its exp(Tensor) would hide ::exp here)
}

namespace lra::core::cuda {

using cpu::AttnUnary;
void attn_unary(AttnUnary op, const Tensor& x, Tensor& y);
void attn_unary_backward(AttnUnary op, const Tensor& x_or_y, const Tensor& dy, Tensor& dx);

void mask_seq(const Tensor& x, const Tensor& key_mask, Tensor& y);
void set_rows_identity(const Tensor& a, const Tensor& row_mask, Tensor& y);
// One thread block per matrix; the norms use the CPU's summation order.
void pinv_init(const Tensor& a, Tensor& z0);
void pinv_init_backward(const Tensor& a, const Tensor& dz0, Tensor& da);
// One pseudo-inverse step (core::pinv_iterate) per matrix in one thread block, its m x m
// operands in shared memory (core/cuda/pinv_step.cu): for m <= 64 in f32, m <= 59 in f64
// (the backward's seven operands within 200 KiB).
// Larger m take the composed cuBLAS step.
bool pinv_step_fits(int64_t m, DType dtype);
void pinv_step(const Tensor& a, const Tensor& z, Tensor& p, Tensor& u1, Tensor& u2,
               Tensor& z_next);
// Adds this step's dA into d_a and writes dZ (of the step's input iterate) into d_z.
void pinv_step_backward(const Tensor& a, const PinvStep& s, const Tensor& d_next, Tensor& d_a,
                        Tensor& d_z);
void crop2d(const Tensor& x, Tensor& y);
void crop2d_backward_add(Tensor& dx, const Tensor& dy);
// Same Philox draws as the CPU (core/philox.h): bit-identical masks.
void attn_dropout_mask(double p, uint64_t seed, uint64_t offset, Tensor& y);

}  // namespace lra::core::cuda
