#pragma once
// CUDA kernels behind core/ops_random.h, with the semantics of core/cpu/random_kernels.h
// (inputs validated and outputs allocated by the dispatching op in core/ops_random.cpp).
// Deterministic: no atomics; every reduction has a fixed order.
//
// Where each op runs:
//   orthogonal_gaussian  host (core/cpu: sequential Gram-Schmidt of dim x dim blocks in
//                        double), then one explicit copy to the device by the op. A tiny
//                        matrix computed once per redraw: not worth a device kernel, and
//                        the device tensor is bit-identical to the CPU one.
//   sample_rows_uniform  device: the same Philox uniform stream as the CPU (cuda::fill_uniform)
//                        and the same pick rule, so the indices equal the CPU's exactly.
//   sample_columns       host: the weights are copied to the host explicitly, the CPU
//                        kernel (Efraimidis-Spirakis keys + partial sort) draws the columns,
//                        and the index/valid/owner tensors are copied back explicitly. The
//                        indices equal the CPU's exactly by construction (one sync per call).
//   everything else      device kernels below.
#include "core/ops_random.h"
#include "core/tensor.h"

namespace lra::core::cuda {

void favor_exp_features(const Tensor& u, const Tensor& x, const Tensor& key_mask, bool per_sequence,
                        Tensor& phi);
void relu_features(const Tensor& u, double eps, const Tensor& key_mask, Tensor& phi);
void relu_features_backward(const Tensor& u, const Tensor& d_phi, const Tensor& key_mask,
                            Tensor& du);
void safe_reciprocal(const Tensor& x, Tensor& y);

// out tensors are f64 device tensors of shape [B, H, S].
void sample_rows_uniform(int64_t batch, int64_t heads, int64_t seq, int64_t samples,
                         const Tensor& key_mask, uint64_t seed, IndexSample& out);

void gather_rows(const Tensor& x, const Tensor& index, const Tensor& w, Tensor& out);
void scatter_rows(Tensor& x, const Tensor& index, const Tensor& w, const Tensor& src,
                  ScatterMode mode);
void expand_key_mask(const Tensor& key_mask, int64_t heads, Tensor& out);

void skein_weights(const Tensor& logits, const Tensor& valid, const Tensor& key_mask,
                   SkeinNorm mode, const Tensor& lse, SkeinWeights& out);
void skein_weights_backward(const SkeinWeights& w, const Tensor& valid, const Tensor& key_mask,
                            SkeinNorm mode, const Tensor& d_e, const Tensor& d_dhat,
                            const Tensor& d_g, Tensor& d_logits);

// Tiled over query rows and key columns with an online max / sum: never more than one
// [rows, 32] tile of logits per block (no N x N in memory).
void masked_logsumexp(const Tensor& q, const Tensor& k, const Tensor& key_mask, double scale,
                      Tensor& lse);
void masked_logsumexp_backward(const Tensor& q, const Tensor& k, const Tensor& key_mask,
                               double scale, const Tensor& lse, const Tensor& d_lse, Tensor& d_q,
                               Tensor& d_k);

}  // namespace lra::core::cuda
