// `softmax`: exact attention softmax(Q Kᵀ/√D) V with key padding masked out exactly and
// optional attention dropout (training only). It forms the N x N matrix: the reference
// every other backend is measured against.
#include <cmath>

#include "attention/attention.h"
#include "core/ops.h"
#include "core/ops_attention.h"

namespace lra::attention {
namespace {

class SoftmaxAttention final : public Attention {
 public:
  explicit SoftmaxAttention(const AttentionOptions& options) : options_(options) {
    LRA_CHECK(options.dropout >= 0.0 && options.dropout < 1.0,
              "softmax attention: dropout {} not in [0, 1)", options.dropout);
  }
  std::string_view name() const override { return "softmax"; }

  void forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
               Tensor& out, Context& saved) override {
    check_attention_inputs("softmax attention", q, k, v, key_mask);
    double scale = 1.0 / std::sqrt(static_cast<double>(q.dim(3)));
    Tensor probs = core::softmax(core::matmul(q, k, false, true), key_mask, scale);
    Tensor weights = probs;
    if (training_ && options_.dropout > 0.0) {
      // The mask is a pure function of (layer seed, step): a resumed run draws the same
      // masks as an uninterrupted one. Each step owns 2^40 counters of the stream.
      Tensor keep = core::dropout_mask(probs.shape(), options_.dropout, options_.seed,
                                       static_cast<uint64_t>(step_) << 40, probs.dtype(),
                                       probs.device());
      weights = core::mul(probs, keep);
      saved["keep"] = keep;
    }
    out = core::matmul(weights, v);
    saved["q"] = q;
    saved["k"] = k;
    saved["v"] = v;
    saved["probs"] = probs;
    saved["weights"] = weights;
  }

  void backward(const Tensor& d_out, const Context& saved, Tensor& d_q, Tensor& d_k,
                Tensor& d_v) override {
    const Tensor& q = saved.at("q");
    const Tensor& k = saved.at("k");
    double scale = 1.0 / std::sqrt(static_cast<double>(q.dim(3)));
    Tensor d_weights = core::matmul(d_out, saved.at("v"), false, true);
    d_v = core::matmul(saved.at("weights"), d_out, true, false);
    if (saved.has("keep")) d_weights = core::mul(d_weights, saved.at("keep"));
    Tensor d_scores = core::softmax_backward(saved.at("probs"), d_weights, scale);
    d_q = core::matmul(d_scores, k);
    d_k = core::matmul(d_scores, q, true, false);
  }

  Cost cost(const AttnShape& s) const override {
    double bh = static_cast<double>(s.batch * s.heads), n = static_cast<double>(s.seq),
           d = static_cast<double>(s.head_dim), el = static_cast<double>(core::dtype_size(options_.dtype));
    Cost c;
    c.forward_flops = bh * (4 * n * n * d + 5 * n * n);   // QKᵀ, PV, softmax
    c.backward_flops = bh * (8 * n * n * d + 4 * n * n);  // dP, dV, dQ, dK, softmax'
    c.forward_bytes = bh * (2 * n * n + n * d) * el;      // scores, probs, out
    c.backward_bytes = bh * (2 * n * n + 3 * n * d) * el;
    return c;
  }

 private:
  AttentionOptions options_;
};

}  // namespace

LRA_REGISTER_ATTENTION(BackendInfo{
    "softmax", "exact softmax(QKᵀ/√D)V attention (quadratic in N)",
    [](SpecReader&, const AttnShape&, const AttentionOptions& options) -> std::unique_ptr<Attention> {
      return std::make_unique<SoftmaxAttention>(options);
    }});

}  // namespace lra::attention
