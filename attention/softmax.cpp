// `softmax`: exact attention softmax(Q Kᵀ/√D) V with key padding masked out exactly and
// optional attention dropout (training only): the reference every other backend is
// measured against. `kernel: composed` forms the N x N matrices from core ops; `fused`
// (the default where it exists) never holds them (core/ops_fused_attention.h).
#include <cmath>

#include "attention/attention.h"
#include "core/ops.h"
#include "core/ops_attention.h"
#include "core/ops_fused_attention.h"

namespace lra::attention {
namespace {

class SoftmaxAttention final : public Attention {
 public:
  SoftmaxAttention(bool fused, const AttentionOptions& options) : fused_(fused), options_(options) {
    LRA_CHECK(options.dropout >= 0.0 && options.dropout < 1.0,
              "softmax attention: dropout {} not in [0, 1)", options.dropout);
  }
  std::string_view name() const override { return "softmax"; }

  void forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
               Tensor& out, Context& saved) override {
    check_attention_inputs("softmax attention", q, k, v, key_mask);
    double scale = 1.0 / std::sqrt(static_cast<double>(q.dim(3)));
    saved["q"] = q;
    saved["k"] = k;
    saved["v"] = v;
    if (key_mask.defined()) saved["mask"] = key_mask;
    if (fused_) {
      core::FusedAttention r = core::fused_softmax_attention(q, k, v, key_mask, scale, dropout());
      out = r.out;
      saved["lse"] = r.lse;
      saved["out"] = r.out;
      return;
    }
    Tensor probs = core::softmax(core::matmul(q, k, false, true), key_mask, scale);
    Tensor weights = probs;
    core::AttentionDropout d = dropout();
    if (d.p > 0.0) {
      Tensor keep = core::dropout_mask(probs.shape(), d.p, d.seed, d.offset, probs.dtype(),
                                       probs.device());
      weights = core::mul(probs, keep);
      saved["keep"] = keep;
    }
    out = core::matmul(weights, v);
    saved["probs"] = probs;
    saved["weights"] = weights;
  }

  void backward(const Tensor& d_out, const Context& saved, Tensor& d_q, Tensor& d_k,
                Tensor& d_v) override {
    const Tensor& q = saved.at("q");
    const Tensor& k = saved.at("k");
    double scale = 1.0 / std::sqrt(static_cast<double>(q.dim(3)));
    if (saved.has("lse")) {
      core::FusedAttentionGrads g = core::fused_softmax_attention_backward(
          q, k, saved.at("v"), saved.has("mask") ? saved.at("mask") : Tensor(), scale, dropout(),
          saved.at("lse"), saved.at("out"), d_out);
      d_q = g.dq;
      d_k = g.dk;
      d_v = g.dv;
      return;
    }
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
    c.forward_flops = bh * (4 * n * n * d + 5 * n * n);  // QKᵀ, PV, softmax
    if (fused_ && options_.device == core::Device::cuda) {
      // Flash-style: the dK/dV kernel and the dQ kernel each recompute QKᵀ and dO Vᵀ (no
      // atomics), so 7 products of 2N²D; in memory only out, lse and one delta per row
      // (lse and delta in f32 for bf16 tensors).
      const double row_el = options_.dtype == core::DType::bf16 ? 4.0 : el;
      c.backward_flops = bh * (14 * n * n * d + 14 * n * n);
      c.forward_bytes = bh * (n * d * el + n * row_el);
      c.backward_bytes = bh * (3 * n * d * el + n * row_el);
    } else if (fused_) {
      // The backward recomputes QKᵀ and the softmax before dP, dV, dQ, dK. Nothing N x N
      // is stored: out and one log-sum-exp per row, plus a working tile of at most 96 full
      // score rows (three in the backward) per thread.
      c.backward_flops = bh * (10 * n * n * d + 7 * n * n);
      c.forward_bytes = bh * (n * d + n) * el + 96 * n * el;
      c.backward_bytes = bh * (3 * n * d) * el + 3 * 96 * n * el;
    } else {
      c.backward_flops = bh * (8 * n * n * d + 4 * n * n);  // dP, dV, dQ, dK, softmax'
      c.forward_bytes = bh * (2 * n * n + n * d) * el;      // scores, probs, out
      c.backward_bytes = bh * (2 * n * n + 3 * n * d) * el;
    }
    return c;
  }

 private:
  // The mask is a pure function of (layer seed, step): a resumed run draws the same masks
  // as an uninterrupted one. Each step owns 2^40 counters of the stream.
  core::AttentionDropout dropout() const {
    core::AttentionDropout d;
    if (training_ && options_.dropout > 0.0) {
      d.p = options_.dropout;
      d.seed = options_.seed;
      d.offset = static_cast<uint64_t>(step_) << 40;
    }
    return d;
  }

  bool fused_;
  AttentionOptions options_;
};

}  // namespace

LRA_REGISTER_ATTENTION(BackendInfo{
    "softmax",
    "exact softmax(QKᵀ/√D)V attention (quadratic in N; fused: tiled on the CPU, flash-style on "
    "CUDA for head dims up to 128)",
    [](SpecReader& spec, const AttnShape& shape, const AttentionOptions& options) -> std::unique_ptr<Attention> {
      std::string kernel = spec.get_string("kernel", "auto");
      LRA_CHECK(kernel == "auto" || kernel == "fused" || kernel == "composed",
                "attention.kernel must be 'auto', 'fused' or 'composed', got '{}'", kernel);
      // The CUDA kernel keeps a head's row in registers: head dims up to 128.
      const bool fused_fits = options.device == core::Device::cpu || shape.head_dim <= 128;
      const bool bf16 = options.dtype == core::DType::bf16;  // only the fused op takes bf16
      LRA_CHECK(!((kernel == "fused" || bf16) && !fused_fits),
                "attention.kernel: {}: the CUDA fused softmax takes head dims up to 128, got "
                "{}; {}",
                kernel, shape.head_dim, bf16 ? "bf16 runs on that kernel only" : "use auto or composed");
      LRA_CHECK(!(bf16 && kernel == "composed"),
                "attention.kernel: composed takes f32 or f64; bf16 runs on the fused kernel");
      bool fused = kernel == "fused" || (kernel == "auto" && fused_fits);
      return std::make_unique<SoftmaxAttention>(fused, options);
    },
    /*takes_bf16=*/true});

}  // namespace lra::attention
