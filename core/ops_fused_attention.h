#pragma once
// Exact softmax attention as one fused op: softmax(scale Q Kᵀ) V, padded keys masked
// exactly, optional attention dropout, without the [B, H, N, N] matrices in memory. The
// CPU kernel (core/cpu/fused_attention.cpp) works on tiles of query rows whose full
// score rows fit in the L2 cache; only the output and one log-sum-exp per row are kept
// for the backward, which recomputes each tile's probabilities. The CUDA kernels
// (core/cuda/fused_attention.cu) are flash-style: query or key tiles stream the other side
// through shared memory with an online softmax; head dims up to 128 there.
// bf16 q, k, v are storage: products in bf16 with fp32 sums on CUDA (tensor cores), f32 math
// on the CPU; the softmax, lse (f32) and the backward's row terms are fp32 on both.
#include <cstdint>

#include "core/tensor.h"

namespace lra::core {

struct AttentionDropout {
  double p = 0;         // probability of zeroing a weight, 0 <= p < 1
  uint64_t seed = 0;    // weight (b, h, i, j) keeps iff the draw (seed, offset + its index in
  uint64_t offset = 0;  // [B, H, N, N] row-major order) is >= p: core::dropout_mask's masks
};

struct FusedAttention {
  Tensor out;  // [B, H, N, D]
  Tensor lse;  // [B, H, N] (f32 for bf16 inputs): log sum over real keys of exp(scale q_i . k_j);
               // -inf without any
};
// q, k, v: [B, H, N, D]; key_mask [B, N] (0 = padding) or undefined.
FusedAttention fused_softmax_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                       const Tensor& key_mask, double scale,
                                       const AttentionDropout& dropout = {});

struct FusedAttentionGrads {
  Tensor dq, dk, dv;
};
// Gradients of the fused op given d_out, from its inputs and the forward's lse and out
// (rowdot(dO, O) = rowdot(P, dP) is the softmax backward's row term, dropout included).
FusedAttentionGrads fused_softmax_attention_backward(const Tensor& q, const Tensor& k,
                                                     const Tensor& v, const Tensor& key_mask,
                                                     double scale, const AttentionDropout& dropout,
                                                     const Tensor& lse, const Tensor& out,
                                                     const Tensor& d_out);

}  // namespace lra::core
