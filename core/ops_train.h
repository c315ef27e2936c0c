#pragma once
// Ops that training needs beyond core/ops.h: embedding gather/scatter, positional add,
// prepending a CLS row, masked mean pooling, pair features, cross-entropy, and the AdamW update.
// Same conventions as core/ops.h: validated here, dispatched by the tensors' device to the
// CPU kernels (core/cpu/train_kernels.cpp) or the CUDA kernels (core/cuda/train_ops.cu;
// an lra::Error in a build without CUDA); f32 and f64. All tensors of an op live on one
// device. Ops that take ids or labels as std::vector<int32_t> (host memory) copy them to
// the device with one explicit host -> device copy per call (cudaMemcpyAsync on the
// kernels' stream: it does not wait for queued work) when their tensors are on CUDA.
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace lra::core {

// ---------------------------------------------------------------- in place
// x[r, :] += bias for every row of x ([..., C], bias [C]); saves the copy of core::add_bias.
void add_bias_inplace(Tensor& x, const Tensor& bias);

// ---------------------------------------------------------------- embeddings
// y[r, :] = table[ids[r], :] for every id; y is [rows, C] with rows = ids.size().
Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids);
// dtable[ids[r], :] += dy[r, :] (accumulates; deterministic order).
void embedding_backward(const std::vector<int32_t>& ids, const Tensor& dy, Tensor& dtable);

// x[b, n, :] += pos[n, :] in place (x: [B, N, C], pos: [P, C] with P >= N).
void add_positions(Tensor& x, const Tensor& pos);
// dpos[n, :] += sum_b dy[b, n, :] (dpos: [P, C], P >= N).
void add_positions_backward(const Tensor& dy, Tensor& dpos);

// y = [cls; x[b]] for every b: x [B, N, C], cls [C] -> y [B, N + 1, C].
Tensor prepend_row(const Tensor& x, const Tensor& cls);
struct PrependRowGrads {
  Tensor dx, dcls;
};
PrependRowGrads prepend_row_backward(const Tensor& dy);

// ---------------------------------------------------------------- pooling
// y[b, :] = mean over n of x[b, n, :], over the positions with key_mask[b, n] = 1, or
// over all N positions when key_mask is undefined. x: [B, N, C] -> y: [B, C].
// A row with no real token pools to 0.
Tensor masked_mean(const Tensor& x, const Tensor& key_mask);
Tensor masked_mean_backward(const Tensor& dy, const Tensor& key_mask, const Shape& x_shape);

// Retrieval features: [u, v, u * v, u - v] along the last dim ([B, C] each -> [B, 4C]).
Tensor pair_features(const Tensor& u, const Tensor& v);
struct PairFeatureGrads {
  Tensor du, dv;
};
PairFeatureGrads pair_features_backward(const Tensor& u, const Tensor& v, const Tensor& dy);

// ---------------------------------------------------------------- dropout
// An inverted-dropout mask of `shape`: element i is 0 with probability p, else
// 1 / (1 - p). Element i is a pure function of (seed, stream, i): Philox4x32-10 with key
// = seed and counter = (i / 4, stream) gives the 32-bit draws of elements 4(i/4)..+3, so
// one block serves four elements (cheaper than core::dropout_mask's one per element) and
// a resumed run draws the very same masks (the same bits on CPU and CUDA). p = 0 gives
// ones. Apply with core::mul.
Tensor dropout_keep_mask(const Shape& shape, double p, uint64_t seed, uint64_t stream,
                         DType dtype = DType::f32, Device device = Device::cpu);

// ---------------------------------------------------------------- fused block epilogues
// The elementwise work around the encoder block's GEMMs (model/modules.cpp), one pass over
// memory each instead of two to four: a Linear's bias goes in with what follows it, and a
// dropout mask is drawn where it is applied, never stored. Each gives the same bits as the
// composed ops it replaces (add_bias_inplace, transpose12, dropout_keep_mask then mul, add,
// gelu) on the CPU, and the CUDA kernels the CPU's bits; bias_gelu_backward matches
// gelu_backward to rounding (the slope's a * b + c may be contracted differently).

// The draws of one dropout site: element i of a tensor is dropped (0) or kept (scaled by
// 1 / (1 - p)) exactly as by dropout_keep_mask(shape, p, seed, stream). p = 0: no dropout.
struct DropoutDraw {
  double p = 0;
  uint64_t seed = 0;
  uint64_t stream = 0;
};

// out = residual + dropout(y + bias), element by element over y ([..., C]). bias ([C]) and
// residual (y's shape) may be undefined: left out. out has y's shape, dtype and device and
// may be y or residual itself (each element is read before it is written). Also the
// backward of a dropout (y = dy, no bias, no residual).
void bias_dropout_add(const Tensor& y, const Tensor& bias, const DropoutDraw& drop,
                      const Tensor& residual, Tensor& out);

// gelu(h + bias) over h [..., C], bias [C]: the FFN's first Linear finished in one pass, and
// its backward dg * gelu'(h + bias) (the input gradient of h + bias), from the same h.
Tensor bias_gelu(const Tensor& h, const Tensor& bias);
Tensor bias_gelu_backward(const Tensor& h, const Tensor& bias, const Tensor& dg);

// A projection's rows y [B*N, H*D] (without its bias) -> [B, H, N, D], with the bias
// [H*D] added: transpose12((y + bias).reshape([B, N, H, D])) in one pass.
Tensor bias_heads_first(const Tensor& y, const Tensor& bias, int64_t batch, int64_t heads);

// ---------------------------------------------------------------- loss
struct CrossEntropyResult {
  double loss = 0;      // mean over the batch of -log softmax(logits)[label]
  int64_t correct = 0;  // rows whose arg-max (first on ties) equals the label
  Tensor probs;         // softmax(logits), kept for the backward
};
// logits [B, K], labels in [0, K). On CUDA the loss and hit count come back to the host:
// this is a device sync (one per training step).
CrossEntropyResult cross_entropy(const Tensor& logits, const std::vector<int32_t>& labels);
// The same without a host sync (training on a device reads it at log intervals only):
// stats is f64 [2] on the logits' device = [sum over rows of -log softmax(logits)[label],
// number of rows whose arg-max (first on ties) equals the label].
struct CrossEntropyStats {
  Tensor stats;
  Tensor probs;
};
CrossEntropyStats cross_entropy_stats(const Tensor& logits, const std::vector<int32_t>& labels);
// d mean-loss / d logits = (probs - onehot(labels)) / B.
Tensor cross_entropy_backward(const Tensor& probs, const std::vector<int32_t>& labels);

// ---------------------------------------------------------------- transfers
// A copy of `t` on `device`. Host -> CUDA copies are queued on the device's stream without
// waiting for the work already queued there (Tensor::to waits: a host sync); the host
// memory is staged before this returns, so `t` may be released at once. Other
// directions are Tensor::to.
Tensor to_device_async(const Tensor& t, Device device);

// ---------------------------------------------------------------- optimizer
// The optimizer step works on lists of tensors (a model's parameters), one call for the
// whole list: on CUDA a few launches (core/cuda/multi_tensor_kernels.cuh: one per 48
// tensors, and one more to finish the norm), on the CPU a loop over the list. The same results on
// both, within rounding: the CUDA sums run in their own fixed order.

// In double, deterministic order (a fixed partition and order on CUDA; one device sync).
double sum_squares(const Tensor& x);

// The global norm of `tensors` (all of one dtype on one device) and its clipping factor,
// without a host sync: returns f64 [2] = [norm, scale] on their device, norm = sqrt(sum
// of sum_squares) and scale = clip_norm / (norm + 1e-6) when clip_norm > 0 and norm >
// clip_norm, else 1 (NaN when the norm is not finite). Read it with .to_vector() when
// needed. An empty list has norm 0.
Tensor global_norm_scale(const std::vector<const Tensor*>& tensors, double clip_norm);

struct AdamWParams {
  double lr = 1e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-6, weight_decay = 0;
  double grad_scale = 1;  // the gradient is multiplied by this (global-norm clipping)
  int64_t step = 1;       // 1-based step for the bias corrections
};
// One AdamW step of every tensor of the list: w[i] with gradient grads[i] and moments m[i],
// v[i] (same shape as w[i]; every tensor of the lists of one dtype, on one device), the
// weight decay applied where decay[i] (false for biases and LayerNorm). Decoupled weight
// decay (Loshchilov & Hutter): with g = grad_scale * grad,
// m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
// w -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + lr * wd * w.
// grad_scale is element 1 of norm_scale when it is defined (the result of
// global_norm_scale, on the same device; p.grad_scale is then ignored), else p.grad_scale.
// Everything on the tensors' device (no host sync on CUDA). An error names the first
// offending list index.
void adamw_update_all(const std::vector<Tensor*>& w, const std::vector<const Tensor*>& grads,
                      const std::vector<Tensor*>& m, const std::vector<Tensor*>& v,
                      const std::vector<bool>& decay, const AdamWParams& p,
                      const Tensor& norm_scale = Tensor());

}  // namespace lra::core
