#pragma once
// CUDA kernels behind core/ops_train.h, with the same semantics as
// core/cpu/train_kernels.h (validated and allocated by the dispatching op).
// Host-side ids and labels (std::vector<int32_t>) are copied to the device here with one
// explicit host -> device copy per call. Deterministic: no float atomics; every sum runs
// in a fixed order that depends only on the shapes (and, for embedding_backward, on the
// ids: rows grouped by id, then chunks of 32 rows), so a result has the same bits on every
// run. add_positions_backward and prepend_row_backward add in the CPU's order (the CPU's
// bits); masked_mean, embedding_backward and the reductions use a different fixed order.
#include <cstdint>
#include <vector>

#include "core/ops_train.h"
#include "core/tensor.h"

namespace lra::core::cuda {

void add_bias_inplace(Tensor& x, const Tensor& bias);
void embedding(const Tensor& table, const std::vector<int32_t>& ids, Tensor& y);
void embedding_backward(const std::vector<int32_t>& ids, const Tensor& dy, Tensor& dtable);
void add_positions(Tensor& x, const Tensor& pos);
void add_positions_backward(const Tensor& dy, Tensor& dpos);
void prepend_row(const Tensor& x, const Tensor& cls, Tensor& y);
void prepend_row_backward(const Tensor& dy, Tensor& dx, Tensor& dcls);
void masked_mean(const Tensor& x, const Tensor& key_mask, Tensor& y);
void masked_mean_backward(const Tensor& dy, const Tensor& key_mask, Tensor& dx);
void pair_features(const Tensor& u, const Tensor& v, Tensor& y);
void pair_features_backward(const Tensor& u, const Tensor& v, const Tensor& dy, Tensor& du,
                            Tensor& dv);
void dropout_keep_mask(double p, uint64_t seed, uint64_t stream, Tensor& mask);
void bias_dropout_add(const Tensor& y, const Tensor& bias, const DropoutDraw& drop,
                      const Tensor& residual, Tensor& out);
void bias_gelu(const Tensor& h, const Tensor& bias, Tensor& g);
void bias_gelu_backward(const Tensor& h, const Tensor& bias, const Tensor& dg, Tensor& dz);
void bias_heads_first(const Tensor& y, const Tensor& bias, Tensor& out);
// Copies the per-row losses and hits back (the one host sync of a training step).
double cross_entropy(const Tensor& logits, const std::vector<int32_t>& labels, Tensor& probs,
                     int64_t& correct);
// stats (f64 [2] on the device) = [sum of row losses in row order, hits]; no host sync.
void cross_entropy_stats(const Tensor& logits, const std::vector<int32_t>& labels, Tensor& probs,
                         Tensor& stats);
// dst (CUDA, same shape/dtype) = src (host), queued without waiting for queued work.
void upload_async(const Tensor& src, Tensor& dst);
void cross_entropy_backward(const Tensor& probs, const std::vector<int32_t>& labels, Tensor& dx);
// The sum of squares of x in double: the partial sums of the multi-tensor kernel
// (core/cuda/multi_tensor_kernels.cuh) read back and added on the host in chunk order.
double sum_squares(const Tensor& x);
// result (f64 [2] on the device) = [norm, scale] of `tensors` (one dtype; see
// core::global_norm_scale): one partial-sums launch per multi_tensor::capacity tensors,
// then one finishing kernel; no host sync, no atomics, the same bits every run.
void global_norm_scale(const std::vector<const Tensor*>& tensors, double clip_norm, Tensor& result);
// core::adamw_update_all on the device (lists validated by the caller; one dtype), one
// launch per multi_tensor::capacity tensors. grad_scale_device: undefined (use
// p.grad_scale) or an f64 device tensor whose element 1 is the scale (global_norm_scale's
// result), so clipping needs no host sync.
void adamw_update_all(const std::vector<Tensor*>& w, const std::vector<const Tensor*>& grads,
                      const std::vector<Tensor*>& m, const std::vector<Tensor*>& v,
                      const std::vector<bool>& decay, const AdamWParams& p,
                      const Tensor& grad_scale_device);

}  // namespace lra::core::cuda
