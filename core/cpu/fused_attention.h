#pragma once
// CPU kernels of core/ops_fused_attention.h (inputs validated, outputs allocated).
#include "core/ops_fused_attention.h"

namespace lra::core::cpu {

void fused_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                     double scale, const AttentionDropout& dropout, Tensor& out, Tensor& lse);
void fused_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& key_mask, double scale,
                              const AttentionDropout& dropout, const Tensor& lse,
                              const Tensor& out, const Tensor& d_out, Tensor& dq, Tensor& dk,
                              Tensor& dv);

}  // namespace lra::core::cpu
