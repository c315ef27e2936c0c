// `linformer`: keys and values projected along the sequence by learned E (and F) of
// shape [k, max_len], then exact softmax over the projected keys:
//   out = softmax(Q (E_N K)ᵀ/√D) (F_N V),
// with E_N the first N columns (a batch shorter than max_len) and padded keys/values
// zeroed before the projection (so their content never reaches the output). When
// k > N only the first N rows are used (k_eff = min(k, N)): a projection to more keys
// than tokens adds nothing but zero keys, and this way identity projections reproduce
// exact softmax attention.
#include <algorithm>
#include <cmath>

#include "attention/attention.h"
#include "core/ops.h"
#include "core/ops_attention.h"
#include "core/rng.h"

namespace lra::attention {
namespace {

class LinformerAttention final : public Attention {
 public:
  LinformerAttention(int64_t k, bool share_kv, int64_t max_len, const AttentionOptions& options)
      : k_(k), share_kv_(share_kv), max_len_(max_len), options_(options) {
    // N(0, 1/k) as in the Linformer reference code.
    auto init = [&](const std::string& suffix, uint64_t stream) {
      Tensor value = Tensor::empty(core::Shape{k, max_len}, options.dtype, core::Device::cpu);
      core::fill_normal(value, options.seed, stream << 40, 0.0, 1.0 / std::sqrt(static_cast<double>(k)));
      // Drawn on the host and copied: the same initial weights on every device.
      if (options.device != core::Device::cpu) value = value.to(options.device);
      return Parameter(options.name_prefix + suffix, value);
    };
    e_ = init("linformer_e", 1);
    if (!share_kv_) f_ = init("linformer_f", 2);
  }
  std::string_view name() const override { return "linformer"; }

  std::vector<Parameter*> parameters() override {
    if (share_kv_) return {&e_};
    return {&e_, &f_};
  }

  void forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
               Tensor& out, Context& saved) override {
    check_attention_inputs("linformer attention", q, k, v, key_mask);
    int64_t n = q.dim(2);
    LRA_CHECK(n <= max_len_, "linformer attention: sequence length {} exceeds max_len {}", n, max_len_);
    core::check_same_dtype(q, e_.value, "linformer attention (inputs vs E)");
    int64_t keff = std::min(k_, n);
    Tensor e = core::crop2d(e_.value, keff, n);
    Tensor f = share_kv_ ? e : core::crop2d(f_.value, keff, n);
    Tensor km = key_mask.defined() ? core::mask_seq(k, key_mask) : k;
    Tensor vm = key_mask.defined() ? core::mask_seq(v, key_mask) : v;
    Tensor kp = core::matmul(e, km);  // [B, H, k_eff, D]
    Tensor vp = core::matmul(f, vm);
    double scale = 1.0 / std::sqrt(static_cast<double>(q.dim(3)));
    Tensor probs = core::matmul_softmax(q, kp, false, true, Tensor(), scale);
    out = core::matmul(probs, vp);
    saved["q"] = q;
    saved["km"] = km;
    saved["vm"] = vm;
    saved["kp"] = kp;
    saved["vp"] = vp;
    saved["e"] = e;
    saved["f"] = f;
    saved["probs"] = probs;
    if (key_mask.defined()) saved["mask"] = key_mask;
  }

  void backward(const Tensor& d_out, const Context& saved, Tensor& d_q, Tensor& d_k,
                Tensor& d_v) override {
    const Tensor& q = saved.at("q");
    const Tensor& probs = saved.at("probs");
    const Tensor& e = saved.at("e");
    const Tensor& f = saved.at("f");
    double scale = 1.0 / std::sqrt(static_cast<double>(q.dim(3)));
    Tensor d_vp = core::matmul(probs, d_out, true, false);
    core::ScoreGrads g = core::softmax_scores_backward(probs, q, saved.at("kp"), d_out, saved.at("vp"), scale);
    d_q = g.d_q;
    const Tensor& d_kp = g.d_k;
    d_k = core::matmul(e, d_kp, true, false);
    d_v = core::matmul(f, d_vp, true, false);
    // Projection gradients summed over batch and heads (a GEMM whose output has batch 1).
    Tensor d_e = Tensor::empty(e.shape(), e.dtype(), e.device());
    core::gemm(d_kp, false, saved.at("km"), true, d_e, 1.0, 0.0);
    Tensor d_f = share_kv_ ? d_e : Tensor::empty(f.shape(), f.dtype(), f.device());
    core::gemm(d_vp, false, saved.at("vm"), true, d_f, 1.0, share_kv_ ? 1.0 : 0.0);
    core::crop2d_backward_add(e_.grad, d_e);
    if (!share_kv_) core::crop2d_backward_add(f_.grad, d_f);
    if (saved.has("mask")) {
      d_k = core::mask_seq(d_k, saved.at("mask"));
      d_v = core::mask_seq(d_v, saved.at("mask"));
    }
  }

  Cost cost(const AttnShape& s) const override {
    double bh = static_cast<double>(s.batch * s.heads), n = static_cast<double>(s.seq),
           d = static_cast<double>(s.head_dim), el = static_cast<double>(core::dtype_size(options_.dtype));
    double kk = static_cast<double>(std::min(k_, s.seq));
    Cost c;
    // E K, F V, Q K'ᵀ, P V' (2 n k d each) and the softmax.
    c.forward_flops = bh * (8 * n * kk * d + 5 * n * kk);
    // dP, dV', dQ, dK', dK, dV, dE, dF (2 n k d each) and softmax'.
    c.backward_flops = bh * (16 * n * kk * d + 4 * n * kk);
    c.forward_bytes = (bh * (2 * n * d + 2 * kk * d + 2 * n * kk + n * d) + 2 * kk * n) * el;
    c.backward_bytes = (bh * (2 * n * kk + 2 * kk * d + 3 * n * d) + 2 * kk * n) * el;
    return c;
  }

 private:
  int64_t k_;
  bool share_kv_;
  int64_t max_len_;
  AttentionOptions options_;
  Parameter e_, f_;
};

}  // namespace

LRA_REGISTER_ATTENTION(BackendInfo{
    "linformer", "Linformer: keys/values projected along the sequence by learned E (k x max_len)",
    [](SpecReader& spec, const AttnShape& shape, const AttentionOptions& options)
        -> std::unique_ptr<Attention> {
      int64_t k = spec.get_int("k", 256);
      bool share = spec.get_bool("share_kv", true);
      int64_t max_len = spec.get_int("max_len", shape.seq);
      LRA_CHECK(k >= 1, "linformer: k must be >= 1, got {}", k);
      LRA_CHECK(max_len >= 1, "linformer: max_len must be >= 1, got {}", max_len);
      LRA_CHECK(max_len >= shape.seq, "linformer: max_len {} is shorter than the sequence length {}",
                max_len, shape.seq);
      return std::make_unique<LinformerAttention>(k, share, max_len, options);
    }});

}  // namespace lra::attention
