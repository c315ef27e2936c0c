// Validation, output allocation and device dispatch for the training ops of core/ops_train.h.
#include "core/ops_train.h"

#include <cmath>
#include <string>
#include <utility>

#include "core/cpu/train_kernels.h"
#include "core/op_checks.h"
#ifdef LRA_WITH_CUDA
#include "core/cuda/train_kernels.h"
// Runs the kernel of the device the op's tensors live on.
#define LRA_TRAIN_RUN(device, fn, ...) \
  ((device) == Device::cuda ? cuda::fn(__VA_ARGS__) : cpu::fn(__VA_ARGS__))
#else
// A CUDA tensor in a build without CUDA cannot exist (no allocator); still say so clearly.
#define LRA_TRAIN_RUN(device, fn, ...) \
  ((device) == Device::cuda ? (fail_no_cuda(#fn), cpu::fn(__VA_ARGS__)) : cpu::fn(__VA_ARGS__))
#endif

namespace lra::core {
namespace {



void check_ids(const char* op, const std::vector<int32_t>& ids, int64_t vocab) {
  for (std::size_t r = 0; r < ids.size(); ++r)
    LRA_CHECK(ids[r] >= 0 && ids[r] < vocab, "{}: id {} at position {} is outside [0, {})", op,
              ids[r], r, vocab);
}

void check_labels(const char* op, const std::vector<int32_t>& labels, int64_t b, int64_t k) {
  LRA_CHECK(static_cast<int64_t>(labels.size()) == b, "{}: {} labels for a batch of {}", op,
            labels.size(), b);
  for (std::size_t i = 0; i < labels.size(); ++i)
    LRA_CHECK(labels[i] >= 0 && labels[i] < k, "{}: label {} of row {} is outside [0, {})", op,
              labels[i], i, k);
}

}  // namespace

void add_bias_inplace(Tensor& x, const Tensor& bias) {
  LRA_CHECK(x.rank() >= 1 && bias.rank() == 1 && bias.dim(0) == x.dim(-1),
            "add_bias_inplace: bias {} does not match the last dim of {}", bias.shape_str(),
            x.shape_str());
  check_same_dtype(x, bias, "add_bias_inplace");
  Device d = one_device("add_bias_inplace", {&x, &bias});
  LRA_TRAIN_RUN(d, add_bias_inplace, x, bias);
}

Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids) {
  LRA_CHECK(table.rank() == 2, "embedding: table must be [V, C], got {}", table.shape_str());
  check_ids("embedding", ids, table.dim(0));
  Tensor y = Tensor::empty(Shape{static_cast<int64_t>(ids.size()), table.dim(1)}, table.dtype(),
                           table.device());
  LRA_TRAIN_RUN(table.device(), embedding, table, ids, y);
  return y;
}

void embedding_backward(const std::vector<int32_t>& ids, const Tensor& dy, Tensor& dtable) {
  LRA_CHECK(dtable.rank() == 2 && dy.numel() == static_cast<int64_t>(ids.size()) * dtable.dim(1),
            "embedding_backward: dy {} does not match {} ids of width {}", dy.shape_str(),
            ids.size(), dtable.dim(1));
  check_same_dtype(dy, dtable, "embedding_backward");
  Device d = one_device("embedding_backward", {&dy, &dtable});
  check_ids("embedding_backward", ids, dtable.dim(0));
  LRA_TRAIN_RUN(d, embedding_backward, ids, dy, dtable);
}

void add_positions(Tensor& x, const Tensor& pos) {
  LRA_CHECK(x.rank() == 3 && pos.rank() == 2 && pos.dim(1) == x.dim(2) && pos.dim(0) >= x.dim(1),
            "add_positions: x {} needs positions [>= {}, {}], got {}", x.shape_str(), x.dim(1),
            x.dim(2), pos.shape_str());
  check_same_dtype(x, pos, "add_positions");
  Device d = one_device("add_positions", {&x, &pos});
  LRA_TRAIN_RUN(d, add_positions, x, pos);
}

void add_positions_backward(const Tensor& dy, Tensor& dpos) {
  LRA_CHECK(
      dy.rank() == 3 && dpos.rank() == 2 && dpos.dim(1) == dy.dim(2) && dpos.dim(0) >= dy.dim(1),
      "add_positions_backward: dy {} does not fit dpos {}", dy.shape_str(), dpos.shape_str());
  check_same_dtype(dy, dpos, "add_positions_backward");
  Device d = one_device("add_positions_backward", {&dy, &dpos});
  LRA_TRAIN_RUN(d, add_positions_backward, dy, dpos);
}

Tensor prepend_row(const Tensor& x, const Tensor& cls) {
  LRA_CHECK(x.rank() == 3 && cls.rank() == 1 && cls.dim(0) == x.dim(2),
            "prepend_row: x {} and cls {} must be [B, N, C] and [C]", x.shape_str(),
            cls.shape_str());
  check_same_dtype(x, cls, "prepend_row");
  Device d = one_device("prepend_row", {&x, &cls});
  Tensor y = Tensor::empty(Shape{x.dim(0), x.dim(1) + 1, x.dim(2)}, x.dtype(), d);
  LRA_TRAIN_RUN(d, prepend_row, x, cls, y);
  return y;
}

PrependRowGrads prepend_row_backward(const Tensor& dy) {
  LRA_CHECK(dy.rank() == 3 && dy.dim(1) >= 1, "prepend_row_backward: dy {} must be [B, N+1, C]",
            dy.shape_str());
  Device d = dy.device();
  PrependRowGrads g{Tensor::empty(Shape{dy.dim(0), dy.dim(1) - 1, dy.dim(2)}, dy.dtype(), d),
                    Tensor::empty(Shape{dy.dim(2)}, dy.dtype(), d)};
  LRA_TRAIN_RUN(d, prepend_row_backward, dy, g.dx, g.dcls);
  return g;
}

Tensor masked_mean(const Tensor& x, const Tensor& key_mask) {
  LRA_CHECK(x.rank() == 3, "masked_mean: x must be [B, N, C], got {}", x.shape_str());
  check_key_mask("masked_mean", key_mask, x.dim(0), x.dim(1));
  Device d = one_device("masked_mean", {&x, &key_mask});
  Tensor y = Tensor::empty(Shape{x.dim(0), x.dim(2)}, x.dtype(), d);
  LRA_TRAIN_RUN(d, masked_mean, x, key_mask, y);
  return y;
}

Tensor masked_mean_backward(const Tensor& dy, const Tensor& key_mask, const Shape& x_shape) {
  LRA_CHECK(
      x_shape.rank() == 3 && dy.rank() == 2 && dy.dim(0) == x_shape[0] && dy.dim(1) == x_shape[2],
      "masked_mean_backward: dy {} does not match x {}", dy.shape_str(), x_shape.str());
  check_key_mask("masked_mean_backward", key_mask, x_shape[0], x_shape[1]);
  Device d = one_device("masked_mean_backward", {&dy, &key_mask});
  Tensor dx = Tensor::empty(x_shape, dy.dtype(), d);
  LRA_TRAIN_RUN(d, masked_mean_backward, dy, key_mask, dx);
  return dx;
}

Tensor pair_features(const Tensor& u, const Tensor& v) {
  LRA_CHECK(u.rank() == 2, "pair_features: u must be [B, C], got {}", u.shape_str());
  check_same_shape(u, v, "pair_features");
  check_same_dtype(u, v, "pair_features");
  Device d = one_device("pair_features", {&u, &v});
  Tensor y = Tensor::empty(Shape{u.dim(0), 4 * u.dim(1)}, u.dtype(), d);
  LRA_TRAIN_RUN(d, pair_features, u, v, y);
  return y;
}

PairFeatureGrads pair_features_backward(const Tensor& u, const Tensor& v, const Tensor& dy) {
  check_same_shape(u, v, "pair_features_backward");
  LRA_CHECK(dy.rank() == 2 && dy.dim(0) == u.dim(0) && dy.dim(1) == 4 * u.dim(1),
            "pair_features_backward: dy {} is not [B, 4C] for u {}", dy.shape_str(), u.shape_str());
  check_same_dtype(u, v, "pair_features_backward");
  check_same_dtype(u, dy, "pair_features_backward");
  Device d = one_device("pair_features_backward", {&u, &v, &dy});
  PairFeatureGrads g{Tensor::empty(u.shape(), u.dtype(), d), Tensor::empty(u.shape(), u.dtype(), d)};
  LRA_TRAIN_RUN(d, pair_features_backward, u, v, dy, g.du, g.dv);
  return g;
}

Tensor dropout_keep_mask(const Shape& shape, double p, uint64_t seed, uint64_t stream, DType dtype,
                         Device device) {
  LRA_CHECK(p >= 0 && p < 1, "dropout_keep_mask: probability {} is outside [0, 1)", p);
  Tensor mask = Tensor::empty(shape, dtype, device);
  if (p == 0)
    mask.fill(1.0);
  else
    LRA_TRAIN_RUN(device, dropout_keep_mask, p, seed, stream, mask);
  return mask;
}

namespace {
// bias ([C] for an input [..., C]) is optional where `optional`; same dtype as x.
void check_bias(const char* op, const Tensor& x, const Tensor& bias, bool optional) {
  if (optional && !bias.defined()) return;
  LRA_CHECK(bias.defined() && x.rank() >= 1 && bias.rank() == 1 && bias.dim(0) == x.dim(-1),
            "{}: bias {} does not match the last dim of {}", op,
            bias.defined() ? bias.shape_str() : std::string("(undefined)"), x.shape_str());
  check_same_dtype(x, bias, op);
}
}  // namespace

void bias_dropout_add(const Tensor& y, const Tensor& bias, const DropoutDraw& drop,
                      const Tensor& residual, Tensor& out) {
  LRA_CHECK(y.defined(), "bias_dropout_add: y is undefined");
  LRA_CHECK(drop.p >= 0 && drop.p < 1, "bias_dropout_add: probability {} is outside [0, 1)",
            drop.p);
  check_bias("bias_dropout_add", y, bias, true);
  if (residual.defined()) {
    check_same_shape(y, residual, "bias_dropout_add (residual)");
    check_same_dtype(y, residual, "bias_dropout_add (residual)");
  }
  LRA_CHECK(out.defined(), "bias_dropout_add: out is undefined (pass y to work in place)");
  check_same_shape(y, out, "bias_dropout_add (out)");
  check_same_dtype(y, out, "bias_dropout_add (out)");
  Device d = one_device("bias_dropout_add", {&y, &bias, &residual, &out});
  if (y.numel() == 0) return;
  LRA_TRAIN_RUN(d, bias_dropout_add, y, bias, drop, residual, out);
}

Tensor bias_gelu(const Tensor& h, const Tensor& bias) {
  check_bias("bias_gelu", h, bias, false);
  Device d = one_device("bias_gelu", {&h, &bias});
  Tensor g = Tensor::empty(h.shape(), h.dtype(), d);
  if (h.numel() > 0) LRA_TRAIN_RUN(d, bias_gelu, h, bias, g);
  return g;
}

Tensor bias_gelu_backward(const Tensor& h, const Tensor& bias, const Tensor& dg) {
  check_bias("bias_gelu_backward", h, bias, false);
  check_same_shape(h, dg, "bias_gelu_backward");
  check_same_dtype(h, dg, "bias_gelu_backward");
  Device d = one_device("bias_gelu_backward", {&h, &bias, &dg});
  Tensor dz = Tensor::empty(h.shape(), h.dtype(), d);
  if (h.numel() > 0) LRA_TRAIN_RUN(d, bias_gelu_backward, h, bias, dg, dz);
  return dz;
}

Tensor bias_heads_first(const Tensor& y, const Tensor& bias, int64_t batch, int64_t heads) {
  LRA_CHECK(y.rank() == 2 && batch > 0 && heads > 0 && y.dim(0) % batch == 0 &&
                y.dim(1) % heads == 0,
            "bias_heads_first: y {} is not [batch * seq, heads * head_dim] for batch {} and "
            "{} heads",
            y.shape_str(), batch, heads);
  check_bias("bias_heads_first", y, bias, false);
  Device d = one_device("bias_heads_first", {&y, &bias});
  Tensor out = Tensor::empty(Shape{batch, heads, y.dim(0) / batch, y.dim(1) / heads}, y.dtype(), d);
  if (y.numel() > 0) LRA_TRAIN_RUN(d, bias_heads_first, y, bias, out);
  return out;
}

CrossEntropyResult cross_entropy(const Tensor& logits, const std::vector<int32_t>& labels) {
  LRA_CHECK(logits.rank() == 2, "cross_entropy: logits must be [B, K], got {}", logits.shape_str());
  check_labels("cross_entropy", labels, logits.dim(0), logits.dim(1));
  CrossEntropyResult r;
  r.probs = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
  r.loss = LRA_TRAIN_RUN(logits.device(), cross_entropy, logits, labels, r.probs, r.correct);
  return r;
}

CrossEntropyStats cross_entropy_stats(const Tensor& logits, const std::vector<int32_t>& labels) {
  LRA_CHECK(logits.rank() == 2, "cross_entropy_stats: logits must be [B, K], got {}",
            logits.shape_str());
  check_labels("cross_entropy_stats", labels, logits.dim(0), logits.dim(1));
  CrossEntropyStats r;
  r.probs = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
  if (logits.device() == Device::cpu) {
    int64_t correct = 0;
    double mean = cpu::cross_entropy(logits, labels, r.probs, correct);
    r.stats = Tensor::from_values(
        Shape{2}, {mean * static_cast<double>(logits.dim(0)), static_cast<double>(correct)},
        DType::f64);
    return r;
  }
  r.stats = Tensor::empty(Shape{2}, DType::f64, logits.device());
#ifdef LRA_WITH_CUDA
  cuda::cross_entropy_stats(logits, labels, r.probs, r.stats);
#else
  fail_no_cuda("cross_entropy_stats");
#endif
  return r;
}

Tensor to_device_async(const Tensor& t, Device device) {
  LRA_CHECK(t.defined(), "to_device_async: tensor is undefined");
  if (t.device() == device) return t;
  if (t.device() != Device::cpu || device != Device::cuda) return t.to(device);
#ifdef LRA_WITH_CUDA
  Tensor out = Tensor::empty(t.shape(), t.dtype(), device);
  cuda::upload_async(t, out);
  return out;
#else
  fail_no_cuda("to_device_async");
#endif
}

Tensor cross_entropy_backward(const Tensor& probs, const std::vector<int32_t>& labels) {
  LRA_CHECK(probs.rank() == 2, "cross_entropy_backward: probs must be [B, K], got {}",
            probs.shape_str());
  check_labels("cross_entropy_backward", labels, probs.dim(0), probs.dim(1));
  Tensor dx = Tensor::empty(probs.shape(), probs.dtype(), probs.device());
  LRA_TRAIN_RUN(probs.device(), cross_entropy_backward, probs, labels, dx);
  return dx;
}

double sum_squares(const Tensor& x) {
  LRA_CHECK(x.defined(), "sum_squares: tensor is undefined");
  return LRA_TRAIN_RUN(x.device(), sum_squares, x);
}

Tensor global_norm_scale(const std::vector<const Tensor*>& tensors, double clip_norm) {
  LRA_CHECK(clip_norm >= 0, "global_norm_scale: clip_norm {} is negative", clip_norm);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const Tensor* t = tensors[i];
    LRA_CHECK(t && t->defined(), "global_norm_scale: tensor {} is undefined", i);
    const Tensor& first = *tensors.front();
    LRA_CHECK(t->device() == first.device(),
              "global_norm_scale: tensor {} is on {}, tensor 0 on {} — copy one first", i,
              device_name(t->device()), device_name(first.device()));
    LRA_CHECK(t->dtype() == first.dtype(), "global_norm_scale: tensor {} is {}, tensor 0 {}", i,
              dtype_name(t->dtype()), dtype_name(first.dtype()));
  }
  const Device d = tensors.empty() ? Device::cpu : tensors.front()->device();
  if (d == Device::cpu) {
    double sq = 0;
    for (const Tensor* t : tensors) sq += cpu::sum_squares(*t);
    double norm = std::sqrt(sq), scale = 1.0;
    if (!std::isfinite(norm))
      scale = std::nan("");
    else if (clip_norm > 0 && norm > clip_norm)
      scale = clip_norm / (norm + 1e-6);
    return Tensor::from_values(Shape{2}, {norm, scale}, DType::f64);
  }
#ifdef LRA_WITH_CUDA
  Tensor result = Tensor::empty(Shape{2}, DType::f64, d);
  cuda::global_norm_scale(tensors, clip_norm, result);
  return result;
#else
  fail_no_cuda("global_norm_scale");
#endif
}

void adamw_update_all(const std::vector<Tensor*>& w, const std::vector<const Tensor*>& grads,
                      const std::vector<Tensor*>& m, const std::vector<Tensor*>& v,
                      const std::vector<bool>& decay, const AdamWParams& p,
                      const Tensor& norm_scale) {
  const std::size_t n = w.size();
  LRA_CHECK(grads.size() == n && m.size() == n && v.size() == n && decay.size() == n,
            "adamw_update_all: list lengths differ (w {}, grads {}, m {}, v {}, decay {})", n,
            grads.size(), m.size(), v.size(), decay.size());
  LRA_CHECK(p.step >= 1, "adamw_update_all: step must be >= 1, got {}", p.step);
  const Device d = n > 0 && w.front() ? w.front()->device() : Device::cpu;
  for (std::size_t i = 0; i < n; ++i) {
    LRA_CHECK(w[i] && grads[i] && m[i] && v[i] && w[i]->defined() && grads[i]->defined() &&
                  m[i]->defined() && v[i]->defined(),
              "adamw_update_all: a tensor of entry {} is undefined", i);
    const Tensor& wi = *w[i];
    for (const auto& [name, t] :
         {std::pair<const char*, const Tensor*>{"grad", grads[i]}, {"m", m[i]}, {"v", v[i]}}) {
      LRA_CHECK(t->shape() == wi.shape(), "adamw_update_all: entry {}: {} is {}, w is {}", i, name,
                t->shape_str(), wi.shape_str());
      LRA_CHECK(t->dtype() == wi.dtype(), "adamw_update_all: entry {}: {} is {}, w is {}", i, name,
                dtype_name(t->dtype()), dtype_name(wi.dtype()));
      LRA_CHECK(t->device() == wi.device(), "adamw_update_all: entry {}: {} is on {}, w on {}", i,
                name, device_name(t->device()), device_name(wi.device()));
    }
    LRA_CHECK(wi.dtype() == w.front()->dtype(), "adamw_update_all: entry {} is {}, entry 0 {}", i,
              dtype_name(wi.dtype()), dtype_name(w.front()->dtype()));
    LRA_CHECK(wi.device() == d, "adamw_update_all: entry {} is on {}, entry 0 on {}", i,
              device_name(wi.device()), device_name(d));
  }
  double grad_scale = p.grad_scale;
  if (norm_scale.defined()) {
    LRA_CHECK(norm_scale.dtype() == DType::f64 && norm_scale.numel() == 2,
              "adamw_update_all: norm_scale must be f64 [2] (from global_norm_scale), got {} {}",
              dtype_name(norm_scale.dtype()), norm_scale.shape_str());
    LRA_CHECK(n == 0 || norm_scale.device() == d,
              "adamw_update_all: norm_scale is on {}, the tensors on {}",
              device_name(norm_scale.device()), device_name(d));
    if (norm_scale.device() == Device::cpu) grad_scale = norm_scale.data<double>()[1];
  }
  if (d == Device::cpu) {
    for (std::size_t i = 0; i < n; ++i)
      cpu::adamw_update(*w[i], *grads[i], *m[i], *v[i], p.lr, p.beta1, p.beta2, p.eps,
                        decay[i] ? p.weight_decay : 0.0, grad_scale, p.step);
    return;
  }
#ifdef LRA_WITH_CUDA
  cuda::adamw_update_all(w, grads, m, v, decay, p, norm_scale);
#else
  fail_no_cuda("adamw_update_all");
#endif
}

}  // namespace lra::core
