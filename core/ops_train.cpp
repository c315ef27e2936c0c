// Validation, output allocation and dispatch for the training ops of core/ops_train.h.
#include "core/ops_train.h"

#include "core/cpu/train_kernels.h"

namespace lra::core {
namespace {

void require_cpu(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors)
    if (t->defined() && t->device() != Device::cpu)
      fail("{}: no {} implementation yet (tensor of shape {})", op, device_name(t->device()),
           t->shape_str());
}

void check_ids(const char* op, const std::vector<int32_t>& ids, int64_t vocab) {
  for (std::size_t r = 0; r < ids.size(); ++r)
    LRA_CHECK(ids[r] >= 0 && ids[r] < vocab, "{}: id {} at position {} is outside [0, {})", op,
              ids[r], r, vocab);
}

void check_mask(const char* op, const Tensor& mask, int64_t b, int64_t n) {
  if (!mask.defined()) return;
  LRA_CHECK(mask.rank() == 2 && mask.dim(0) == b && mask.dim(1) == n,
            "{}: key mask {} does not match [batch, seq] = [{}, {}]", op, mask.shape_str(), b, n);
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
  require_cpu("add_bias_inplace", {&x, &bias});
  cpu::add_bias_inplace(x, bias);
}

Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids) {
  LRA_CHECK(table.rank() == 2, "embedding: table must be [V, C], got {}", table.shape_str());
  require_cpu("embedding", {&table});
  check_ids("embedding", ids, table.dim(0));
  Tensor y = Tensor::empty(Shape{static_cast<int64_t>(ids.size()), table.dim(1)}, table.dtype(),
                           table.device());
  cpu::embedding(table, ids, y);
  return y;
}

void embedding_backward(const std::vector<int32_t>& ids, const Tensor& dy, Tensor& dtable) {
  LRA_CHECK(dtable.rank() == 2 && dy.numel() == static_cast<int64_t>(ids.size()) * dtable.dim(1),
            "embedding_backward: dy {} does not match {} ids of width {}", dy.shape_str(),
            ids.size(), dtable.dim(1));
  check_same_dtype(dy, dtable, "embedding_backward");
  require_cpu("embedding_backward", {&dy, &dtable});
  check_ids("embedding_backward", ids, dtable.dim(0));
  cpu::embedding_backward(ids, dy, dtable);
}

void add_positions(Tensor& x, const Tensor& pos) {
  LRA_CHECK(x.rank() == 3 && pos.rank() == 2 && pos.dim(1) == x.dim(2) && pos.dim(0) >= x.dim(1),
            "add_positions: x {} needs positions [>= {}, {}], got {}", x.shape_str(), x.dim(1),
            x.dim(2), pos.shape_str());
  check_same_dtype(x, pos, "add_positions");
  require_cpu("add_positions", {&x, &pos});
  cpu::add_positions(x, pos);
}

void add_positions_backward(const Tensor& dy, Tensor& dpos) {
  LRA_CHECK(
      dy.rank() == 3 && dpos.rank() == 2 && dpos.dim(1) == dy.dim(2) && dpos.dim(0) >= dy.dim(1),
      "add_positions_backward: dy {} does not fit dpos {}", dy.shape_str(), dpos.shape_str());
  check_same_dtype(dy, dpos, "add_positions_backward");
  require_cpu("add_positions_backward", {&dy, &dpos});
  cpu::add_positions_backward(dy, dpos);
}

Tensor prepend_row(const Tensor& x, const Tensor& cls) {
  LRA_CHECK(x.rank() == 3 && cls.rank() == 1 && cls.dim(0) == x.dim(2),
            "prepend_row: x {} and cls {} must be [B, N, C] and [C]", x.shape_str(),
            cls.shape_str());
  check_same_dtype(x, cls, "prepend_row");
  require_cpu("prepend_row", {&x, &cls});
  Tensor y = Tensor::empty(Shape{x.dim(0), x.dim(1) + 1, x.dim(2)}, x.dtype(), x.device());
  cpu::prepend_row(x, cls, y);
  return y;
}

PrependRowGrads prepend_row_backward(const Tensor& dy) {
  LRA_CHECK(dy.rank() == 3 && dy.dim(1) >= 1, "prepend_row_backward: dy {} must be [B, N+1, C]",
            dy.shape_str());
  require_cpu("prepend_row_backward", {&dy});
  PrependRowGrads g{Tensor::empty(Shape{dy.dim(0), dy.dim(1) - 1, dy.dim(2)}, dy.dtype()),
                    Tensor::empty(Shape{dy.dim(2)}, dy.dtype())};
  cpu::prepend_row_backward(dy, g.dx, g.dcls);
  return g;
}

Tensor masked_mean(const Tensor& x, const Tensor& key_mask) {
  LRA_CHECK(x.rank() == 3, "masked_mean: x must be [B, N, C], got {}", x.shape_str());
  check_mask("masked_mean", key_mask, x.dim(0), x.dim(1));
  require_cpu("masked_mean", {&x, &key_mask});
  Tensor y = Tensor::empty(Shape{x.dim(0), x.dim(2)}, x.dtype(), x.device());
  cpu::masked_mean(x, key_mask, y);
  return y;
}

Tensor masked_mean_backward(const Tensor& dy, const Tensor& key_mask, const Shape& x_shape) {
  LRA_CHECK(
      x_shape.rank() == 3 && dy.rank() == 2 && dy.dim(0) == x_shape[0] && dy.dim(1) == x_shape[2],
      "masked_mean_backward: dy {} does not match x {}", dy.shape_str(), x_shape.str());
  check_mask("masked_mean_backward", key_mask, x_shape[0], x_shape[1]);
  require_cpu("masked_mean_backward", {&dy, &key_mask});
  Tensor dx = Tensor::empty(x_shape, dy.dtype(), dy.device());
  cpu::masked_mean_backward(dy, key_mask, dx);
  return dx;
}

Tensor pair_features(const Tensor& u, const Tensor& v) {
  LRA_CHECK(u.rank() == 2, "pair_features: u must be [B, C], got {}", u.shape_str());
  check_same_shape(u, v, "pair_features");
  check_same_dtype(u, v, "pair_features");
  require_cpu("pair_features", {&u, &v});
  Tensor y = Tensor::empty(Shape{u.dim(0), 4 * u.dim(1)}, u.dtype(), u.device());
  cpu::pair_features(u, v, y);
  return y;
}

PairFeatureGrads pair_features_backward(const Tensor& u, const Tensor& v, const Tensor& dy) {
  check_same_shape(u, v, "pair_features_backward");
  LRA_CHECK(dy.rank() == 2 && dy.dim(0) == u.dim(0) && dy.dim(1) == 4 * u.dim(1),
            "pair_features_backward: dy {} is not [B, 4C] for u {}", dy.shape_str(), u.shape_str());
  require_cpu("pair_features_backward", {&u, &v, &dy});
  PairFeatureGrads g{Tensor::empty(u.shape(), u.dtype()), Tensor::empty(u.shape(), u.dtype())};
  cpu::pair_features_backward(u, v, dy, g.du, g.dv);
  return g;
}

Tensor dropout_keep_mask(const Shape& shape, double p, uint64_t seed, uint64_t stream,
                         DType dtype) {
  LRA_CHECK(p >= 0 && p < 1, "dropout_keep_mask: probability {} is outside [0, 1)", p);
  Tensor mask = Tensor::empty(shape, dtype);
  if (p == 0)
    mask.fill(1.0);
  else
    cpu::dropout_keep_mask(p, seed, stream, mask);
  return mask;
}

CrossEntropyResult cross_entropy(const Tensor& logits, const std::vector<int32_t>& labels) {
  LRA_CHECK(logits.rank() == 2, "cross_entropy: logits must be [B, K], got {}", logits.shape_str());
  require_cpu("cross_entropy", {&logits});
  check_labels("cross_entropy", labels, logits.dim(0), logits.dim(1));
  CrossEntropyResult r;
  r.probs = Tensor::empty(logits.shape(), logits.dtype());
  r.loss = cpu::cross_entropy(logits, labels, r.probs, r.correct);
  return r;
}

Tensor cross_entropy_backward(const Tensor& probs, const std::vector<int32_t>& labels) {
  LRA_CHECK(probs.rank() == 2, "cross_entropy_backward: probs must be [B, K], got {}",
            probs.shape_str());
  require_cpu("cross_entropy_backward", {&probs});
  check_labels("cross_entropy_backward", labels, probs.dim(0), probs.dim(1));
  Tensor dx = Tensor::empty(probs.shape(), probs.dtype());
  cpu::cross_entropy_backward(probs, labels, dx);
  return dx;
}

double sum_squares(const Tensor& x) {
  require_cpu("sum_squares", {&x});
  return cpu::sum_squares(x);
}

void adamw_update(Tensor& w, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& p) {
  check_same_shape(w, grad, "adamw_update (grad)");
  check_same_shape(w, m, "adamw_update (m)");
  check_same_shape(w, v, "adamw_update (v)");
  check_same_dtype(w, grad, "adamw_update");
  check_same_dtype(w, m, "adamw_update");
  check_same_dtype(w, v, "adamw_update");
  require_cpu("adamw_update", {&w, &grad, &m, &v});
  LRA_CHECK(p.step >= 1, "adamw_update: step must be >= 1, got {}", p.step);
  cpu::adamw_update(w, grad, m, v, p.lr, p.beta1, p.beta2, p.eps, p.weight_decay, p.grad_scale,
                    p.step);
}

}  // namespace lra::core
