// `nystrom`: Nyströmformer (Xiong et al. 2021).
//   Q̃, K̃ = segment means of Q, K over m landmarks (means over real tokens only; uneven
//          segments when m ∤ n; with fewer real tokens than m some landmarks are empty)
//   F = softmax(Q K̃ᵀ/√D), A = softmax(Q̃ K̃ᵀ/√D), B = softmax(Q̃ Kᵀ/√D) (padded keys masked)
//   out = F · Z · (B V) + conv(V)   with Z ≈ A⁺ from the iteration
//   Z ← ¼ Z (13I − AZ (15I − AZ (7I − AZ))), Z₀ = Aᵀ / (‖A‖₁ ‖A‖∞) per matrix.
// Empty landmarks are masked out of F and A (their columns get weight 0) and their rows of
// A are replaced by unit rows, so A is block-diagonal [A_real, I]: every iterate keeps that
// structure, the real block is inverted as if the empty landmarks did not exist, and no
// NaN can appear. The backward differentiates the iteration exactly as computed,
// including Z₀'s dependence on A through the norms (a subgradient at ties, see
// core::pinv_init_backward).
// When m >= N (the padded length) every real token is its own landmark; like the
// authors' code we then take the exact path softmax(QKᵀ/√D)V (+ conv), which is what the
// landmark formula equals when the pseudo-inverse is exact.
#include <cmath>

#include "attention/attention.h"
#include "core/ops.h"
#include "core/ops_attention.h"
#include "core/rng.h"

namespace lra::attention {
namespace {

class NystromAttention final : public Attention {
 public:
  NystromAttention(int64_t landmarks, int64_t iters, int64_t conv_kernel, int64_t heads,
                   const AttentionOptions& options)
      : m_(landmarks), iters_(iters), conv_kernel_(conv_kernel), heads_(heads), options_(options) {
    if (conv_kernel_ > 0) {
      // PyTorch's Conv2d default: U(−1/√fan_in, 1/√fan_in), fan_in = kernel width.
      Tensor w = Tensor::empty(core::Shape{heads, conv_kernel}, options.dtype, core::Device::cpu);
      double bound = 1.0 / std::sqrt(static_cast<double>(conv_kernel));
      core::fill_uniform(w, options.seed, uint64_t{3} << 40, -bound, bound);
      // Drawn on the host and copied: the same initial weights on every device.
      if (options.device != core::Device::cpu) w = w.to(options.device);
      conv_ = Parameter(options.name_prefix + "nystrom_conv", w);
    }
  }
  std::string_view name() const override { return "nystrom"; }

  std::vector<Parameter*> parameters() override {
    if (conv_kernel_ > 0) return {&conv_};
    return {};
  }

  void forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
               Tensor& out, Context& saved) override {
    check_attention_inputs("nystrom attention", q, k, v, key_mask);
    int64_t n = q.dim(2);
    double scale = 1.0 / std::sqrt(static_cast<double>(q.dim(3)));
    saved["q"] = q;
    saved["k"] = k;
    saved["v"] = v;
    if (key_mask.defined()) saved["mask"] = key_mask;
    if (m_ >= n) {
      Tensor probs = core::matmul_softmax(q, k, false, true, key_mask, scale);
      out = core::matmul(probs, v);
      saved["probs"] = probs;
    } else {
      core::SegmentMeans lq = core::segment_means(q, m_, key_mask);
      core::SegmentMeans lk = core::segment_means(k, m_, key_mask);
      const Tensor& lmask = lq.counts;  // nonzero = landmark has tokens
      Tensor f = core::matmul_softmax(q, lk.means, false, true, lmask, scale);  // [B,H,N,m]
      Tensor a_soft = core::matmul_softmax(lq.means, lk.means, false, true, lmask, scale);
      Tensor a = core::set_rows_identity(a_soft, lmask);                            // [B,H,m,m]
      Tensor b = core::matmul_softmax(lq.means, k, false, true, key_mask, scale);  // [B,H,m,N]
      Tensor bv = core::matmul(b, v);  // [B,H,m,D]
      core::PinvIteration pinv = core::pinv_iterate(a, core::pinv_init(a), iters_);
      const Tensor& z = pinv.z;
      // Every step's products are kept, so the backward recomputes none of them.
      for (std::size_t j = 0; j < pinv.steps.size(); ++j) {
        saved[fmt::format("z{}", j)] = pinv.steps[j].z;
        saved[fmt::format("p{}", j)] = pinv.steps[j].p;
        saved[fmt::format("u1_{}", j)] = pinv.steps[j].u1;
        saved[fmt::format("u2_{}", j)] = pinv.steps[j].u2;
      }
      Tensor x = core::matmul(z, bv);  // [B,H,m,D]
      out = core::matmul(f, x);
      saved["lq"] = lq.means;
      saved["lk"] = lk.means;
      saved["lmask"] = lmask;
      saved["f"] = f;
      saved["a"] = a;
      saved["b"] = b;
      saved["bv"] = bv;
      saved["z"] = z;
      saved["x"] = x;
    }
    if (conv_kernel_ > 0) {
      LRA_CHECK(q.dim(1) == heads_, "nystrom attention: built for {} heads, got input {}", heads_,
                q.shape_str());
      core::check_same_dtype(v, conv_.value, "nystrom attention (inputs vs conv weight)");
      core::depthwise_conv_seq_add(out, v, conv_.value, key_mask);  // padded v rows read as 0
    }
  }

  void backward(const Tensor& d_out, const Context& saved, Tensor& d_q, Tensor& d_k,
                Tensor& d_v) override {
    const Tensor& q = saved.at("q");
    const Tensor& k = saved.at("k");
    const Tensor& v = saved.at("v");
    Tensor mask = saved.has("mask") ? saved.at("mask") : Tensor();
    double scale = 1.0 / std::sqrt(static_cast<double>(q.dim(3)));
    if (saved.has("probs")) {
      const Tensor& probs = saved.at("probs");
      core::ScoreGrads g = core::softmax_scores_backward(probs, q, k, d_out, v, scale);
      d_v = core::matmul(probs, d_out, true, false);
      d_q = g.d_q;
      d_k = g.d_k;
    } else {
      const Tensor& lq = saved.at("lq");
      const Tensor& lk = saved.at("lk");
      const Tensor& f = saved.at("f");
      const Tensor& a = saved.at("a");
      const Tensor& b = saved.at("b");
      // out = F X, X = Z (B V)
      Tensor d_x = core::matmul(f, d_out, true, false);
      // F = softmax(Q K̃ᵀ) with dF = dOut Xᵀ
      core::ScoreGrads gf = core::softmax_scores_backward(f, q, lk, d_out, saved.at("x"), scale);
      d_q = gf.d_q;
      Tensor d_lk = gf.d_k;
      Tensor d_z = core::matmul(d_x, saved.at("bv"), false, true);
      Tensor d_bv = core::matmul(saved.at("z"), d_x, true, false);
      d_v = core::matmul(b, d_bv, true, false);
      // B = softmax(Q̃ Kᵀ) with dB = d(BV) Vᵀ
      core::ScoreGrads gb = core::softmax_scores_backward(b, lq, k, d_bv, v, scale);
      Tensor d_lq = gb.d_q;
      d_k = gb.d_k;
      // Through the iteration, then Z0 = Aᵀ / (‖A‖₁ ‖A‖∞).
      std::vector<core::PinvStep> steps;
      for (int64_t j = 0; j < iters_; ++j)
        steps.push_back({saved.at(fmt::format("z{}", j)), saved.at(fmt::format("p{}", j)),
                         saved.at(fmt::format("u1_{}", j)), saved.at(fmt::format("u2_{}", j))});
      Tensor d_a = Tensor::zeros(a.shape(), a.dtype(), a.device());
      d_z = core::pinv_iterate_backward(a, steps, d_z, d_a);
      core::add_into(d_a, core::pinv_init_backward(a, d_z));
      d_a = core::mask_seq(d_a, saved.at("lmask"));  // unit rows of empty landmarks are constant
      Tensor d_s2 = core::softmax_backward(a, d_a, scale);
      core::gemm(d_s2, false, lk, false, d_lq, 1.0, 1.0);
      core::gemm(d_s2, true, lq, false, d_lk, 1.0, 1.0);
      core::segment_means_backward_add(d_q, d_lq, mask);
      core::segment_means_backward_add(d_k, d_lk, mask);
    }
    if (conv_kernel_ > 0) {
      core::depthwise_conv_seq_backward_add(d_v, conv_.grad, v, conv_.value, d_out, mask);
    }
  }

  Cost cost(const AttnShape& s) const override {
    double bh = static_cast<double>(s.batch * s.heads), n = static_cast<double>(s.seq),
           d = static_cast<double>(s.head_dim), el = static_cast<double>(core::dtype_size(options_.dtype));
    double kc = static_cast<double>(conv_kernel_);
    Cost c;
    double conv_fwd = bh * 2 * n * d * kc, conv_bwd = bh * 4 * n * d * kc;
    if (m_ >= s.seq) {
      c.forward_flops = bh * (4 * n * n * d + 5 * n * n) + conv_fwd;
      c.backward_flops = bh * (8 * n * n * d + 4 * n * n) + conv_bwd;
      c.forward_bytes = bh * (2 * n * n + 2 * n * d) * el;
      c.backward_bytes = bh * (2 * n * n + 4 * n * d) * el;
      return c;
    }
    double m = static_cast<double>(m_), it = static_cast<double>(iters_);
    // Landmark means; Q K̃ᵀ, Q̃ K̃ᵀ, Q̃ Kᵀ and their softmaxes; B V, Z (BV), F X;
    // Z₀ and per iteration 4 m x m GEMMs plus 3 scaled copies.
    c.forward_flops = bh * (2 * n * d + 4 * n * m * d + 2 * m * m * d + 10 * n * m + 5 * m * m +
                            4 * n * m * d + 2 * m * m * d + 3 * m * m +
                            it * (8 * m * m * m + 3 * m * m)) + conv_fwd;
    // Reverse of each GEMM (2 each), softmax', per iteration 3 recomputed + 8 backward
    // m x m GEMMs, and the segment-mean scatters.
    c.backward_flops = bh * (16 * n * m * d + 8 * m * m * d + 8 * n * m + 4 * m * m +
                             it * (22 * m * m * m + 6 * m * m) + 4 * m * m + 2 * n * d) + conv_bwd;
    c.forward_bytes = bh * (4 * n * m + (4 * it + 6) * m * m + 4 * m * d + n * d) * el;
    c.backward_bytes = bh * (4 * n * m + 8 * m * m + 6 * m * d + 4 * n * d) * el;
    return c;
  }

 private:
  int64_t m_, iters_, conv_kernel_, heads_;
  AttentionOptions options_;
  Parameter conv_;
};

}  // namespace

LRA_REGISTER_ATTENTION(BackendInfo{
    "nystrom", "Nyströmformer: landmark (segment-mean) approximation with iterative pseudo-inverse",
    [](SpecReader& spec, const AttnShape& shape, const AttentionOptions& options)
        -> std::unique_ptr<Attention> {
      int64_t m = spec.get_int("landmarks", 64);
      int64_t iters = spec.get_int("pinv_iters", 6);
      int64_t conv = spec.get_int("conv_kernel", 35);
      LRA_CHECK(m >= 1, "nystrom: landmarks must be >= 1, got {}", m);
      LRA_CHECK(iters >= 0, "nystrom: pinv_iters must be >= 0, got {}", iters);
      LRA_CHECK(conv >= 0 && (conv == 0 || conv % 2 == 1),
                "nystrom: conv_kernel must be 0 (off) or an odd width, got {}", conv);
      return std::make_unique<NystromAttention>(m, iters, conv, shape.heads, options);
    }});

}  // namespace lra::attention
