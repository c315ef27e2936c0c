#pragma once
// CUDA kernels of core/ops_fused_attention.h (inputs validated, outputs allocated by the
// front end): flash-style exact softmax attention. Blocks own a tile of query rows (forward,
// dQ) or of keys (dK, dV) and stream the other side through shared memory with an online
// softmax, so no N x N matrix exists. Deterministic: every output element is one thread's
// fixed loop; dQ and dK/dV are separate kernels instead of float atomics. Head dims up to
// max_head_dim. bf16 tensors (storage; products on tensor cores, softmax in fp32) take
// flash_bf16_kernels.cuh, with an f32 lse.
#include "core/ops_fused_attention.h"

namespace lra::core::cuda {

constexpr int64_t fused_attention_max_head_dim = 128;

void fused_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                     double scale, const AttentionDropout& dropout, Tensor& out, Tensor& lse);
void fused_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& key_mask, double scale,
                              const AttentionDropout& dropout, const Tensor& lse,
                              const Tensor& out, const Tensor& d_out, Tensor& dq, Tensor& dk,
                              Tensor& dv);

}  // namespace lra::core::cuda
