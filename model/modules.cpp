#include "model/modules.h"

#include <fmt/format.h>

#include <chrono>

#include "core/ops.h"
#include "core/ops_train.h"
#include "core/rng.h"

namespace lra::model {

uint64_t hash_name(const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

void init_normal(Tensor& t, uint64_t seed, const std::string& name, double std) {
  core::fill_normal(t, mix64(seed ^ hash_name(name)), 0, 0.0, std);
}

// ---------------------------------------------------------------- Linear
Linear::Linear(const std::string& name, int64_t in, int64_t out, DType dtype, uint64_t init_seed)
    : weight_(name + ".weight", Tensor::empty(Shape{in, out}, dtype)),
      bias_(name + ".bias", Tensor::zeros(Shape{out}, dtype), false) {
  init_normal(weight_.value, init_seed, weight_.name, 0.02);
}

Tensor Linear::forward_unbiased(const Tensor& x) {
  LRA_CHECK(x.rank() == 2 && x.dim(1) == in(), "{}: input {} is not [rows, {}]", weight_.name,
            x.shape_str(), in());
  x_ = x;
  return core::matmul(x, weight_.value);
}

Tensor Linear::forward(const Tensor& x) {
  Tensor y = forward_unbiased(x);
  core::add_bias_inplace(y, bias_.value);
  return y;
}

Tensor Linear::backward(const Tensor& dy, Tensor* dx_accum) {
  LRA_CHECK(x_.defined(), "{}: backward without forward", weight_.name);
  // dW += xᵀ dy; db += column sums of dy; dx = dy Wᵀ.
  core::gemm(x_, true, dy, false, weight_.grad, 1.0, 1.0);
  core::add_into(bias_.grad, core::sum_leading(dy));
  Tensor dx;
  if (dx_accum) {
    core::gemm(dy, false, weight_.value, true, *dx_accum, 1.0, 1.0);
  } else {
    dx = core::matmul(dy, weight_.value, false, true);
  }
  x_ = Tensor();
  return dx;
}

// ---------------------------------------------------------------- LayerNorm
LayerNorm::LayerNorm(const std::string& name, int64_t dim, DType dtype)
    : gamma_(name + ".gamma", Tensor::full(Shape{dim}, 1.0, dtype), false),
      beta_(name + ".beta", Tensor::zeros(Shape{dim}, dtype), false) {}

Tensor LayerNorm::forward(const Tensor& x) {
  auto r = core::layer_norm(x, gamma_.value, beta_.value, 1e-5);
  x_ = x;
  mean_ = r.mean;
  rstd_ = r.rstd;
  return r.y;
}

Tensor LayerNorm::backward(const Tensor& dy, const Tensor& residual_grad) {
  LRA_CHECK(x_.defined(), "{}: backward without forward", gamma_.name);
  auto g = core::layer_norm_backward(x_, gamma_.value, mean_, rstd_, dy, residual_grad);
  core::add_into(gamma_.grad, g.dgamma);
  core::add_into(beta_.grad, g.dbeta);
  x_ = mean_ = rstd_ = Tensor();
  return g.dx;
}

// ---------------------------------------------------------------- Dropout
core::DropoutDraw Dropout::draw(const RunState& state) {
  last_ = core::DropoutDraw{};
  if (!state.training || p_ == 0) return last_;
  // The stream is (step, layer, site): a resumed run draws the very same masks.
  last_.p = p_;
  last_.seed = state.dropout_seed;
  last_.stream = (static_cast<uint64_t>(state.step) << 20) |
                 (static_cast<uint64_t>(layer_ & 0xfff) << 8) |
                 static_cast<uint64_t>(site_ & 0xff);
  return last_;
}

Tensor Dropout::forward(const Tensor& x, const RunState& state) {
  const core::DropoutDraw d = draw(state);
  if (d.p == 0) return x;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  core::bias_dropout_add(x, Tensor(), d, Tensor(), y);
  return y;
}

Tensor Dropout::backward(const Tensor& dy) {
  if (last_.p == 0) return dy;
  Tensor dx = Tensor::empty(dy.shape(), dy.dtype(), dy.device());
  core::bias_dropout_add(dy, Tensor(), last_, Tensor(), dx);
  return dx;
}

// ---------------------------------------------------------------- MultiHeadAttention
namespace {
attention::AttentionOptions attention_options(const std::string& name, const MhaConfig& config,
                                              int64_t layer, DType dtype, uint64_t init_seed) {
  attention::AttentionOptions options;
  options.seed = mix64(init_seed ^ mix64(0x61747465ull + static_cast<uint64_t>(layer)));
  options.dropout = config.attention_dropout;
  options.name_prefix = name + ".";
  options.dtype = dtype;
  options.device = config.device;
  return options;
}
}  // namespace

MultiHeadAttention::MultiHeadAttention(const std::string& name, const MhaConfig& config,
                                       int64_t layer, DType dtype, uint64_t init_seed)
    : heads_(config.heads),
      head_dim_(config.head_dim),
      wq_(name + ".wq", config.dim, config.heads * config.head_dim, dtype, init_seed),
      wk_(name + ".wk", config.dim, config.heads * config.head_dim, dtype, init_seed),
      wv_(name + ".wv", config.dim, config.heads * config.head_dim, dtype, init_seed),
      wo_(name + ".wo", config.heads * config.head_dim, config.dim, dtype, init_seed),
      attention_(attention::make_attention(config.attention, config.shape,
                                           attention_options(name, config, layer, dtype, init_seed),
                                           config.context)) {}

Tensor MultiHeadAttention::forward_unbiased(const Tensor& x, int64_t batch, int64_t seq,
                                            const Tensor& key_mask, const RunState& state) {
  batch_ = batch;
  seq_ = seq;
  auto heads_first = [&](Linear& w) {
    return core::bias_heads_first(w.forward_unbiased(x), w.bias(), batch, heads_);
  };
  Tensor q = heads_first(wq_);
  Tensor k = heads_first(wk_);
  Tensor v = heads_first(wv_);
  attention_->set_training(state.training);
  attention_->set_step(state.step);
  saved_.clear();
  Tensor out;
  auto t0 = std::chrono::steady_clock::now();
  attention_->forward(q, k, v, key_mask, out, saved_);
  attention_seconds_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Tensor merged = core::transpose12(out).reshape(Shape{batch * seq, heads_ * head_dim_});
  return wo_.forward_unbiased(merged);
}

Tensor MultiHeadAttention::backward(const Tensor& dy) {
  Tensor d_merged = wo_.backward(dy);
  Tensor d_out = core::transpose12(d_merged.reshape(Shape{batch_, seq_, heads_, head_dim_}));
  Tensor dq, dk, dv;
  auto t0 = std::chrono::steady_clock::now();
  attention_->backward(d_out, saved_, dq, dk, dv);
  attention_seconds_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  saved_.clear();
  Shape rows{batch_ * seq_, heads_ * head_dim_};
  Tensor dx = wq_.backward(core::transpose12(dq).reshape(rows));
  wk_.backward(core::transpose12(dk).reshape(rows), &dx);
  wv_.backward(core::transpose12(dv).reshape(rows), &dx);
  return dx;
}

void MultiHeadAttention::collect(std::vector<Parameter*>& out) {
  wq_.collect(out);
  wk_.collect(out);
  wv_.collect(out);
  for (Parameter* p : attention_->parameters()) out.push_back(p);
  wo_.collect(out);
}

// ---------------------------------------------------------------- Block
Block::Block(const std::string& name, const MhaConfig& config, int64_t hidden, double dropout,
             int64_t layer, DType dtype, uint64_t init_seed)
    : ln1_(name + ".ln1", config.dim, dtype),
      ln2_(name + ".ln2", config.dim, dtype),
      mha_(name + ".attn", config, layer, dtype, init_seed),
      ff1_(name + ".ffn1", config.dim, hidden, dtype, init_seed),
      ff2_(name + ".ffn2", hidden, config.dim, dtype, init_seed),
      drop_attn_(dropout, layer + 1, 1),
      drop_ffn_(dropout, layer + 1, 2) {}

Tensor Block::forward(const Tensor& x, int64_t batch, int64_t seq, const Tensor& key_mask,
                      const RunState& state) {
  // Each GEMM's bias goes into the pass that follows it: x1 = x + drop(attn + bo),
  // gelu(ffn1 + b1), out = x1 + drop(ffn2 + b2), written over the GEMMs' outputs.
  Tensor x1 = mha_.forward_unbiased(ln1_.forward(x), batch, seq, key_mask, state);
  core::bias_dropout_add(x1, mha_.output_bias(), drop_attn_.draw(state), x, x1);
  ff1_out_ = ff1_.forward_unbiased(ln2_.forward(x1));  // without its bias
  Tensor f = ff2_.forward_unbiased(core::bias_gelu(ff1_out_, ff1_.bias()));
  core::bias_dropout_add(f, ff2_.bias(), drop_ffn_.draw(state), x1, f);
  return f;
}

Tensor Block::backward(const Tensor& dy) {
  Tensor d_f1 =
      core::bias_gelu_backward(ff1_out_, ff1_.bias(), ff2_.backward(drop_ffn_.backward(dy)));
  ff1_out_ = Tensor();
  // Each residual's gradient joins its LayerNorm's in the LayerNorm's backward pass.
  Tensor d_x1 = ln2_.backward(ff1_.backward(d_f1), dy);
  d_f1 = Tensor();
  return ln1_.backward(mha_.backward(drop_attn_.backward(d_x1)), d_x1);
}

void Block::collect(std::vector<Parameter*>& out) {
  ln1_.collect(out);
  mha_.collect(out);
  ln2_.collect(out);
  ff1_.collect(out);
  ff2_.collect(out);
}

}  // namespace lra::model
