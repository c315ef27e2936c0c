#pragma once
// Ops for the randomised attention backends (Performer FAVOR+, Skeinformer): random
// orthogonal projections, positive / ReLU random features, reproducible index sampling,
// row gathers/scatters by index, and the Skeinformer row normalisation. Like core/ops.h
// they validate once and dispatch on the device (CPU kernels in core/cpu/random_kernels.cpp,
// CUDA kernels in core/cuda/random_ops.cu; core/cuda/random_kernels.h says which ops compute
// on the host and copy explicitly). All tensors of an op live on one device.
//
// Shapes: x is [B, H, N, C]; a key mask is [B, N] (1 = token, 0 = padding) of any float
// dtype. Index tensors ([B, H, S]) hold integer row numbers in a float dtype (exact up
// to 2^24 in f32); "slot weights" ([B, H, S]) are 0/1 flags or weights per sampled slot.
#include <cstdint>

#include "core/tensor.h"

namespace lra::core {

// ---------------------------------------------------------------- projections
// rows x dim matrix whose rows come in blocks of `dim` mutually orthogonal directions
// (Gram-Schmidt of a Gaussian block, the last block truncated), each row rescaled to the
// norm of an independent standard Gaussian dim-vector (chi_dim distributed). A pure
// function of (seed, rows, dim); computed in double on the host, converted to dtype and
// copied to `device` (the same values on every device).
Tensor orthogonal_gaussian(int64_t rows, int64_t dim, uint64_t seed, DType dtype = DType::f32,
                           Device device = Device::cpu);

// ---------------------------------------------------------------- random features
// Positive softmax-kernel features from u = W x (u: [B, H, N, m], x: [B, H, N, D]):
//   phi[r, i] = exp(u[r, i] - |x_r|^2 / 2 - c) / sqrt(m).
// per_sequence = false: c is the row's own max exponent (queries; cancels in the ratio).
// per_sequence = true: c is the max exponent over the real rows of each [b, h] sequence
// (keys; one constant per sequence cancels too). Rows of padded keys (key_mask given)
// are exactly 0 and never enter the max.
Tensor favor_exp_features(const Tensor& u, const Tensor& x, const Tensor& key_mask,
                          bool per_sequence);
// ReLU features relu(u) + eps, rows of padded keys exactly 0.
Tensor relu_features(const Tensor& u, double eps, const Tensor& key_mask);
// Gradient w.r.t. u of relu_features given d_phi (0 on padded rows and where u <= 0).
Tensor relu_features_backward(const Tensor& u, const Tensor& d_phi, const Tensor& key_mask);
// 1 / x elementwise, with 0 where x == 0 (a query that sees no key gets output 0).
Tensor safe_reciprocal(const Tensor& x);

// ---------------------------------------------------------------- sampling
struct IndexSample {
  Tensor index;  // [B, H, S] f64: row numbers
  Tensor valid;  // [B, H, S] f64: 1 for a drawn slot, 0 for an unused one
  Tensor owner;  // [B, H, S] f64: 1 for the last valid slot naming each row (for scatters)
};
// S rows per [b, h] drawn uniformly with replacement among the real tokens (all N
// positions without a mask). Sequences without a real token get only invalid slots.
// The sample lives on `device` (the key mask, when given, must live there too) and is
// the same on every device.
IndexSample sample_rows_uniform(int64_t batch, int64_t heads, int64_t seq, int64_t samples,
                                const Tensor& key_mask, uint64_t seed,
                                Device device = Device::cpu);
// min(S, real tokens) distinct columns per [b, h] drawn without replacement with
// probability proportional to weight[b, h, i]^power (successive sampling, via the
// Efraimidis-Spirakis keys log(u_i) / w_i); an undefined weight means uniform. Real
// columns of weight 0 are drawn only after every positive one, in random order. The
// remaining slots are invalid. The sample lives on `device` (as do weight and key mask,
// when given) and is the same on every device.
IndexSample sample_columns(const Tensor& weight, double power, int64_t batch, int64_t heads,
                           int64_t seq, int64_t samples, const Tensor& key_mask, uint64_t seed,
                           Device device = Device::cpu);

// ---------------------------------------------------------------- gather / scatter
// out[b, h, s, :] = w[b, h, s] * x[b, h, index[b, h, s], :] (w undefined = 1).
Tensor gather_rows(const Tensor& x, const Tensor& index, const Tensor& w = {});
// For each slot s with w[b, h, s] != 0, in slot order:
//   add:    x[b, h, index, :] += w * src[b, h, s, :]
//   assign: x[b, h, index, :] = src[b, h, s, :]
//   zero:   x[b, h, index, :] = 0                      (src unused)
enum class ScatterMode { add, assign, zero };
void scatter_rows(Tensor& x, const Tensor& index, const Tensor& w, const Tensor& src,
                  ScatterMode mode);
// [B, N] key mask -> [B, H, 1, N] in dtype on `device` (all ones when the mask is
// undefined), for masked sums over the sequence by GEMM.
Tensor expand_key_mask(const Tensor& key_mask, int64_t batch, int64_t heads, int64_t seq,
                       DType dtype, Device device = Device::cpu);

// ---------------------------------------------------------------- Skeinformer
// Row normalisation of sampled logits L ([B, H, N, S], invalid slots ignored):
//   E[r, s] = valid[s] exp(L[r, s] - m_r)        (m_r: row max over valid slots)
//   adaptive: g_r = exp(mean_valid(L[r, :]) - m_r), dhat_r = sum_s E[r, s] + (n - S_valid) g_r
//   simple:   g_r = 0,                              dhat_r = sum_s E[r, s]
//   exact:    E[r, s] = valid[s] exp(L[r, s] - lse_r) with the given exact log row sums
//             lse ([B, H, N]), g_r = 0, dhat_r = 1 (the "no normalisation" ablation)
// where n is the number of real keys of the row's sequence. m_r cancels in the ratio.
// Rows whose sequence has no valid slot get E = 0, g = 0, dhat = 0.
enum class SkeinNorm { adaptive, simple, exact };
struct SkeinWeights {
  Tensor e, g, dhat;  // [B, H, N, S], [B, H, N], [B, H, N]
};
SkeinWeights skein_weights(const Tensor& logits, const Tensor& valid, const Tensor& key_mask,
                           SkeinNorm mode, const Tensor& lse = {});
// Gradient w.r.t. the logits given dE (w.r.t. E, before the dhat term), d_dhat and dg:
//   dE_total = dE + d_dhat * valid;  dg_total = dg + (n - S_valid) d_dhat (adaptive)
//   dL = dE_total * E + dg_total * g * valid / S_valid.
// (exact mode: dL = dE * E; the gradient w.r.t. lse is -sum_s dL[r, s].)
Tensor skein_weights_backward(const SkeinWeights& w, const Tensor& valid, const Tensor& key_mask,
                              SkeinNorm mode, const Tensor& d_e, const Tensor& d_dhat,
                              const Tensor& d_g);

// lse[b, h, r] = log sum_{real keys j} exp(scale q_r . k_j) (q, k: [B, H, N, D]), without
// forming the N x N matrix (row blocks). -inf for a sequence without real keys.
Tensor masked_logsumexp(const Tensor& q, const Tensor& k, const Tensor& key_mask, double scale);
// Adds the gradient of sum(d_lse * lse) into d_q and d_k.
void masked_logsumexp_backward(const Tensor& q, const Tensor& k, const Tensor& key_mask,
                               double scale, const Tensor& lse, const Tensor& d_lse, Tensor& d_q,
                               Tensor& d_k);

}  // namespace lra::core
