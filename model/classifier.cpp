#include "model/classifier.h"

#include <cmath>

#include "core/cuda_runtime_info.h"
#include "core/ops.h"
#include "core/ops_train.h"

namespace lra::model {

Pooling parse_pooling(const std::string& name) {
  if (name == "mean") return Pooling::mean;
  if (name == "mean_all") return Pooling::mean_all;
  if (name == "cls") return Pooling::cls;
  fail("unknown pooling '{}' (known: mean, mean_all, cls)", name);
}

namespace {
Tensor sinusoidal_table(int64_t len, int64_t dim, DType dtype) {
  std::vector<double> v(static_cast<std::size_t>(len * dim));
  for (int64_t p = 0; p < len; ++p)
    for (int64_t i = 0; i < dim; ++i) {
      double freq = std::pow(10000.0, -static_cast<double>(2 * (i / 2)) / static_cast<double>(dim));
      double angle = static_cast<double>(p) * freq;
      v[static_cast<std::size_t>(p * dim + i)] = i % 2 == 0 ? std::sin(angle) : std::cos(angle);
    }
  return Tensor::from_values(Shape{len, dim}, v, dtype);
}

MhaConfig mha_config(const ClassifierConfig& c) {
  MhaConfig m;
  m.dim = c.dim;
  m.heads = c.heads;
  m.head_dim = c.head_dim;
  m.attention = c.attention;
  m.attention_dropout = c.attention_dropout;
  m.context = c.context;
  m.device = c.device;
  m.shape = {c.batch * (c.pairs ? 2 : 1), c.heads, c.max_len + (c.pooling == Pooling::cls ? 1 : 0),
             c.head_dim};
  return m;
}
}  // namespace

Classifier::Classifier(const ClassifierConfig& c)
    : config_(c),
      tokens_("embed.tokens", Tensor::empty(Shape{c.vocab, c.dim}, c.dtype)),
      drop_embed_(c.dropout, 0, 0),
      final_ln_("final_ln", c.dim, c.dtype),
      head1_("head.fc1", (c.pairs ? 4 : 1) * c.dim, c.head_hidden, c.dtype, c.init_seed),
      head2_("head.fc2", c.head_hidden, c.num_classes, c.dtype, c.init_seed) {
  LRA_CHECK(c.vocab > 0 && c.num_classes > 1 && c.max_len > 0 && c.dim > 0 && c.layers >= 0,
            "{}: invalid model sizes (vocab {}, classes {}, max_len {}, dim {}, layers {})",
            c.context, c.vocab, c.num_classes, c.max_len, c.dim, c.layers);
  if (c.device == core::Device::cuda) {
    std::string why = core::cuda_unavailable_reason();
    LRA_CHECK(why.empty(), "{}: train.device is cuda, but this lra cannot use a GPU: {}",
              c.context, why);
  }
  init_normal(tokens_.value, c.init_seed, tokens_.name, 0.02);
  params_.push_back(&tokens_);
  if (c.learned_positions) {
    positions_ = Parameter("embed.positions", Tensor::empty(Shape{c.max_len, c.dim}, c.dtype));
    init_normal(positions_.value, c.init_seed, positions_.name, 0.02);
    params_.push_back(&positions_);
  } else {
    positions_.name = "embed.positions";
    positions_.value = sinusoidal_table(c.max_len, c.dim, c.dtype);
  }
  if (c.pooling == Pooling::cls) {
    cls_ = Parameter("embed.cls", Tensor::empty(Shape{c.dim}, c.dtype));
    init_normal(cls_.value, c.init_seed, cls_.name, 0.02);
    params_.push_back(&cls_);
  }
  MhaConfig mc = mha_config(c);
  for (int64_t l = 0; l < c.layers; ++l) {
    blocks_.push_back(std::make_unique<Block>("layer" + std::to_string(l), mc, c.hidden, c.dropout,
                                              l, c.dtype, c.init_seed));
    blocks_.back()->collect(params_);
  }
  final_ln_.collect(params_);
  head1_.collect(params_);
  head2_.collect(params_);
  if (c.device != core::Device::cpu) {
    // Parameters are initialised on the host (the same values as a CPU run, bit for bit)
    // and copied to the device once; backends create theirs on the device already.
    for (Parameter* p : params_) {
      if (p->value.device() == c.device) continue;
      p->value = p->value.to(c.device);
      p->grad = Tensor::zeros(p->value.shape(), p->value.dtype(), c.device);
    }
    if (positions_.value.device() != c.device)  // the sinusoidal table (not a parameter)
      positions_.value = positions_.value.to(c.device);
  }
}

std::vector<attention::Attention*> Classifier::backends() {
  std::vector<attention::Attention*> out;
  for (auto& b : blocks_) out.push_back(&b->attention().backend());
  return out;
}

double Classifier::attention_seconds() const {
  double t = 0;
  for (const auto& b : blocks_) t += b->attention().attention_seconds();
  return t;
}

void Classifier::reset_attention_seconds() {
  for (auto& b : blocks_) b->attention().reset_attention_seconds();
}

Tensor Classifier::forward(const std::vector<int32_t>& ids, const Tensor& key_mask,
                           const std::vector<int32_t>& ids2, const Tensor& mask2, int64_t batch,
                           int64_t seq, const RunState& state) {
  const ClassifierConfig& c = config_;
  LRA_CHECK(seq <= c.max_len, "{}: batch of length {} exceeds max_len {}", c.context, seq,
            c.max_len);
  LRA_CHECK(static_cast<int64_t>(ids.size()) == batch * seq,
            "classifier: {} ids for a batch of {} x {}", ids.size(), batch, seq);
  LRA_CHECK(!c.pairs || ids2.size() == ids.size(), "classifier: pairs need ids2 of the same size");
  // Both documents of a pair run through the encoder as one batch of 2B sequences.
  int64_t rows = c.pairs ? 2 * batch : batch;
  ids_ = ids;
  // The masks are assembled on the host and copied to the device once (ids go with the
  // embedding op); a mask already on the device is brought back first.
  auto on_host = [](const Tensor& t) {
    return t.device() == core::Device::cpu ? t : t.to(core::Device::cpu);
  };
  Tensor mask = on_host(key_mask);
  if (c.pairs) {
    ids_.insert(ids_.end(), ids2.begin(), ids2.end());
    mask = Tensor::empty(Shape{rows, seq}, key_mask.dtype());
    mask.slice(0, batch).copy_from(on_host(key_mask));
    mask.slice(batch, rows).copy_from(on_host(mask2));
  }
  Tensor x = core::embedding(tokens_.value, ids_).reshape(Shape{rows, seq, c.dim});
  core::add_positions(x, positions_.value);
  int64_t aseq = seq;
  attn_mask_ = mask;
  pool_mask_ = c.pooling == Pooling::mean ? mask : Tensor();
  if (c.pooling == Pooling::cls) {
    x = core::prepend_row(x, cls_.value);
    aseq = seq + 1;
    // The CLS row is a real token for attention; pooling takes exactly that row.
    attn_mask_ = Tensor::zeros(Shape{rows, aseq}, mask.dtype());
    pool_mask_ = Tensor::zeros(Shape{rows, aseq}, mask.dtype());
    for (int64_t r = 0; r < rows; ++r) {
      attn_mask_.slice(r, r + 1)
          .reshape(Shape{aseq})
          .slice(1, aseq)
          .copy_from(mask.slice(r, r + 1).reshape(Shape{seq}));
      // Element (r, 0) of both masks.
      Tensor head = attn_mask_.slice(r, r + 1).reshape(Shape{aseq}).slice(0, 1);
      head.fill(1.0);
      pool_mask_.slice(r, r + 1).reshape(Shape{aseq}).slice(0, 1).fill(1.0);
    }
  }
  if (c.device != core::Device::cpu && attn_mask_.defined()) {
    // Queued without waiting for the device (no host sync in the step).
    Tensor dev = core::to_device_async(attn_mask_, c.device);
    if (pool_mask_.defined())
      pool_mask_ = c.pooling == Pooling::mean ? dev : core::to_device_async(pool_mask_, c.device);
    attn_mask_ = dev;
  }
  batch_ = batch;
  seq_ = seq;
  rows_ = rows;
  aseq_ = aseq;
  Tensor h = drop_embed_.forward(x, state).reshape(Shape{rows * aseq, c.dim});
  x = Tensor();
  for (auto& block : blocks_) h = block->forward(h, rows, aseq, attn_mask_, state);
  h = final_ln_.forward(h);
  Tensor pooled = core::masked_mean(h.reshape(Shape{rows, aseq, c.dim}), pool_mask_);
  Tensor features = pooled;
  if (c.pairs) {
    pooled_ = pooled;
    features = core::pair_features(pooled.slice(0, batch), pooled.slice(batch, rows));
  }
  head1_out_ = head1_.forward(features);
  return head2_.forward(core::relu(head1_out_));
}

void Classifier::backward(const Tensor& d_logits) {
  const ClassifierConfig& c = config_;
  Tensor d_feat = head1_.backward(core::relu_backward(head1_out_, head2_.backward(d_logits)));
  head1_out_ = Tensor();
  Tensor d_pooled = d_feat;
  if (c.pairs) {
    auto g = core::pair_features_backward(pooled_.slice(0, batch_), pooled_.slice(batch_, rows_),
                                          d_feat);
    d_pooled = Tensor::empty(Shape{rows_, c.dim}, d_feat.dtype(), d_feat.device());
    d_pooled.slice(0, batch_).copy_from(g.du);
    d_pooled.slice(batch_, rows_).copy_from(g.dv);
    pooled_ = Tensor();
  }
  Tensor dh = core::masked_mean_backward(d_pooled, pool_mask_, Shape{rows_, aseq_, c.dim})
                  .reshape(Shape{rows_ * aseq_, c.dim});
  dh = final_ln_.backward(dh);
  for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) dh = (*it)->backward(dh);
  Tensor dx = drop_embed_.backward(dh).reshape(Shape{rows_, aseq_, c.dim});
  if (c.pooling == Pooling::cls) {
    auto g = core::prepend_row_backward(dx);
    core::add_into(cls_.grad, g.dcls);
    dx = g.dx;
  }
  if (c.learned_positions) core::add_positions_backward(dx, positions_.grad);
  core::embedding_backward(ids_, dx.reshape(Shape{rows_ * seq_, c.dim}), tokens_.grad);
  attn_mask_ = pool_mask_ = Tensor();
}

}  // namespace lra::model
