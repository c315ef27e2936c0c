// `linear`: linear attention of Katharopoulos et al. with feature map φ(x) = elu(x) + 1:
// out_i = φ(q_i)ᵀ (Σ_j φ(k_j) v_jᵀ) / φ(q_i)ᵀ Σ_j φ(k_j). Padded keys get φ = 0, so they
// contribute nothing. Cost O(N D²); nothing N x N is formed.
#include <cmath>

#include "attention/attention.h"
#include "core/ops.h"
#include "core/ops_attention.h"

namespace lra::attention {
namespace {

class LinearAttention final : public Attention {
 public:
  explicit LinearAttention(const AttentionOptions& options) : options_(options) {}
  std::string_view name() const override { return "linear"; }

  void forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
               Tensor& out, Context& saved) override {
    check_attention_inputs("linear attention", q, k, v, key_mask);
    Tensor qf = core::elu_plus_one(q);
    Tensor kf = core::elu_plus_one(k);
    if (key_mask.defined()) kf = core::mask_seq(kf, key_mask);
    Tensor ones = Tensor::full(core::Shape{q.dim(2), 1}, 1.0, q.dtype(), q.device());
    Tensor kv = core::matmul(kf, v, true, false);       // [B, H, D, D]
    Tensor ksum = core::matmul(kf, ones, true, false);  // [B, H, D, 1]
    Tensor num = core::matmul(qf, kv);                  // [B, H, N, D]
    Tensor den = core::matmul(qf, ksum);                // [B, H, N, 1]
    Tensor inv = core::reciprocal_or_zero(den);         // a row with no real key gives 0
    out = core::scale_rows(num, inv);
    saved["q"] = q;
    saved["k"] = k;
    saved["v"] = v;
    saved["qf"] = qf;
    saved["kf"] = kf;
    saved["kv"] = kv;
    saved["ksum"] = ksum;
    saved["num"] = num;
    saved["inv"] = inv;
    saved["ones"] = ones;
    if (key_mask.defined()) saved["mask"] = key_mask;
  }

  void backward(const Tensor& d_out, const Context& saved, Tensor& d_q, Tensor& d_k,
                Tensor& d_v) override {
    const Tensor& qf = saved.at("qf");
    const Tensor& kf = saved.at("kf");
    const Tensor& kv = saved.at("kv");
    const Tensor& ksum = saved.at("ksum");
    core::ScaleRowsGrads g = core::scale_rows_backward(saved.at("num"), saved.at("inv"), d_out);
    Tensor d_den = core::reciprocal_or_zero_backward(saved.at("inv"), g.ds);  // [B, H, N, 1]
    Tensor d_qf = core::matmul(g.dx, kv, false, true);
    core::gemm(d_den, false, ksum, true, d_qf, 1.0, 1.0);
    Tensor d_kv = core::matmul(qf, g.dx, true, false);     // [B, H, D, D]
    Tensor d_ksum = core::matmul(qf, d_den, true, false);  // [B, H, D, 1]
    Tensor d_kf = core::matmul(saved.at("v"), d_kv, false, true);
    core::gemm(saved.at("ones"), false, d_ksum, true, d_kf, 1.0, 1.0);
    d_v = core::matmul(kf, d_kv);
    if (saved.has("mask")) d_kf = core::mask_seq(d_kf, saved.at("mask"));
    d_q = core::elu_plus_one_backward(saved.at("q"), d_qf);
    d_k = core::elu_plus_one_backward(saved.at("k"), d_kf);
  }

  Cost cost(const AttnShape& s) const override {
    double bh = static_cast<double>(s.batch * s.heads), n = static_cast<double>(s.seq),
           d = static_cast<double>(s.head_dim), el = static_cast<double>(core::dtype_size(options_.dtype));
    Cost c;
    // φ(Q), φ(K); KᵀV and Kᵀ1; φ(Q)(KᵀV) and φ(Q)(Kᵀ1); normalise.
    c.forward_flops = bh * (4 * n * d + 4 * n * d * d + 4 * n * d + n * d + n);
    // dφ(Q) (2 GEMMs), d(KᵀV), d(Kᵀ1), dφ(K) (2), dV, row dots, feature-map slopes.
    c.backward_flops = bh * (8 * n * d * d + 8 * n * d + 4 * n * d + 4 * n * d);
    c.forward_bytes = bh * (3 * n * d + d * d + d + 2 * n) * el;
    c.backward_bytes = bh * (5 * n * d + d * d + d + 2 * n) * el;
    return c;
  }

 private:
  AttentionOptions options_;
};

}  // namespace

LRA_REGISTER_ATTENTION(BackendInfo{
    "linear", "linear attention with the elu(x)+1 feature map (Katharopoulos et al.)",
    [](SpecReader&, const AttnShape&, const AttentionOptions& options) -> std::unique_ptr<Attention> {
      return std::make_unique<LinearAttention>(options);
    }});

}  // namespace lra::attention
