// Performer FAVOR+ (Choromanski et al., 2021): out = phi(Q) (phi(K)^T V) / (phi(Q) phi(K)^T 1)
// with m random features per head dimension, shared by the heads of a layer:
//   kernel exp:  phi(x) = exp(w_i . x - |x|^2 / 2) / sqrt(m), x = input * D^-1/4 (positive
//                random features of the softmax kernel exp(q . k / sqrt(D)));
//   kernel relu: phi(x) = relu(w_i . x) + eps.
// The rows w_i are orthogonal Gaussian blocks rescaled to chi norms (core::orthogonal_gaussian),
// a pure function of (layer seed, step / redraw): redraw = 0 keeps one projection for ever,
// redraw = R draws a new one each time the step crosses a multiple of R, so a resumed run
// sees the same features. The exp features subtract a max (per query row; per sequence for
// keys) that cancels exactly in the ratio, so the backward treats it as a constant and is
// exact. Padded keys get phi = 0 and contribute nothing. Never forms an N x N matrix.
#include <cmath>

#include "attention/attention.h"
#include "core/ops.h"
#include "core/ops_random.h"
#include "core/rng.h"

namespace lra::attention {
namespace {

using core::DType;
using core::Shape;

enum class FeatureKernel { exp, relu };

using core::mix64;

class Performer final : public Attention {
 public:
  Performer(int64_t features, FeatureKernel kernel, int64_t redraw, double relu_eps,
            const AttentionOptions& options)
      : features_(features),
        kernel_(kernel),
        redraw_(redraw),
        relu_eps_(relu_eps),
        seed_(options.seed) {}

  std::string_view name() const override { return "performer"; }

  void forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
               Tensor& out, Context& saved) override {
    check_attention_inputs("performer attention", q, k, v, key_mask);
    int64_t n = q.dim(2), d = q.dim(3);
    double c = std::pow(static_cast<double>(d), -0.25);
    Tensor qs = core::scale(q, c), ks = core::scale(k, c);
    Tensor w = projection(d, q.dtype(), q.device());
    Tensor uq = core::matmul(qs, w, false, true);  // [B, H, N, m]
    Tensor uk = core::matmul(ks, w, false, true);
    Tensor phq, phk;
    if (kernel_ == FeatureKernel::exp) {
      phq = core::favor_exp_features(uq, qs, {}, false);
      phk = core::favor_exp_features(uk, ks, key_mask, true);
    } else {
      phq = core::relu_features(uq, relu_eps_, {});
      phk = core::relu_features(uk, relu_eps_, key_mask);
    }
    Tensor ones = Tensor::full(Shape{n, 1}, 1.0, q.dtype(), q.device());
    Tensor s = core::matmul(phk, v, true, false);               // [B, H, m, D]
    Tensor z = core::matmul(phk, ones, true, false);            // [B, H, m, 1]
    Tensor num = core::matmul(phq, s);                          // [B, H, N, D]
    Tensor rden = core::safe_reciprocal(core::matmul(phq, z));  // [B, H, N, 1]
    out = core::scale_rows(num, rden);

    saved.clear();
    saved["qs"] = qs;
    saved["ks"] = ks;
    saved["v"] = v;
    saved["projection"] = w;
    saved["phi_q"] = phq;
    saved["phi_k"] = phk;
    if (kernel_ == FeatureKernel::relu) {
      saved["u_q"] = uq;
      saved["u_k"] = uk;
    }
    saved["s"] = s;
    saved["z"] = z;
    saved["rden"] = rden;
    saved["out"] = out;
    if (key_mask.defined()) saved["key_mask"] = key_mask;
  }

  void backward(const Tensor& d_out, const Context& saved, Tensor& d_q, Tensor& d_k,
                Tensor& d_v) override {
    const Tensor& qs = saved.at("qs");
    const Tensor& ks = saved.at("ks");
    const Tensor& v = saved.at("v");
    const Tensor& w = saved.at("projection");
    const Tensor& phq = saved.at("phi_q");
    const Tensor& phk = saved.at("phi_k");
    const Tensor& s = saved.at("s");
    const Tensor& z = saved.at("z");
    const Tensor& rden = saved.at("rden");
    const Tensor& out = saved.at("out");
    Tensor key_mask = saved.has("key_mask") ? saved.at("key_mask") : Tensor();
    core::check_same_shape(d_out, out, "performer backward (d_out)");
    int64_t n = qs.dim(2), d = qs.dim(3);
    Shape rows{qs.dim(0), qs.dim(1), n};
    Shape col{qs.dim(0), qs.dim(1), n, 1};

    // out = num / den: dnum = G / den, dden = -sum_c(G * out) / den.
    Tensor dnum = core::scale_rows(d_out, rden);
    Tensor dden =
        core::scale(core::mul(core::sum_rows(core::mul(d_out, out)), rden.reshape(rows)), -1.0)
            .reshape(col);
    // num = phq s, den = phq z.
    Tensor dphq = core::matmul(dnum, s, false, true);
    core::gemm(dden, false, z, true, dphq, 1.0, 1.0);
    Tensor ds = core::matmul(phq, dnum, true, false);
    Tensor dz = core::matmul(phq, dden, true, false);
    // s = phk^T v, z = phk^T 1.
    Tensor ones = Tensor::full(Shape{n, 1}, 1.0, qs.dtype(), qs.device());
    Tensor dphk = core::matmul(v, ds, false, true);
    core::gemm(ones, false, dz, true, dphk, 1.0, 1.0);
    d_v = core::matmul(phk, ds);

    Tensor dqs, dks;
    if (kernel_ == FeatureKernel::exp) {
      // phi = exp(u - |x|^2/2 - c)/sqrt(m): du = dphi * phi, dx = du W - x * sum_i du_i.
      Tensor duq = core::mul(dphq, phq), duk = core::mul(dphk, phk);
      dqs = core::sub(core::matmul(duq, w), core::scale_rows(qs, core::sum_rows(duq)));
      dks = core::sub(core::matmul(duk, w), core::scale_rows(ks, core::sum_rows(duk)));
    } else {
      Tensor duq = core::relu_features_backward(saved.at("u_q"), dphq, {});
      Tensor duk = core::relu_features_backward(saved.at("u_k"), dphk, key_mask);
      dqs = core::matmul(duq, w);
      dks = core::matmul(duk, w);
    }
    double c = std::pow(static_cast<double>(d), -0.25);
    d_q = core::scale(dqs, c);
    d_k = core::scale(dks, c);
  }

  Cost cost(const AttnShape& shape) const override {
    double p = static_cast<double>(shape.batch * shape.heads);
    double n = static_cast<double>(shape.seq), d = static_cast<double>(shape.head_dim);
    double m = static_cast<double>(features_);
    double feat = kernel_ == FeatureKernel::exp ? 4.0 : 2.0;  // per feature element
    Cost cost;
    // projections 2 * 2pNDm, features, s and num 2 * 2pNmD, z and den 2 * 2pNm, scaling.
    cost.forward_flops = p * n * (8 * d * m + 2 * feat * m + 4 * m * d + 4 * m + 3 * d);
    // dphq, ds, dphk, dv (4 * 2pNmD), dz/dden terms (4 * 2pNm), du and dx (2 * 2pNmD + ...).
    cost.backward_flops = p * n * (8 * m * d + 8 * m + 8 * d * m + 6 * m + 10 * d);
    double f = 4.0;  // bytes of an f32 element
    // u_q, u_k, phi_q, phi_k ([p, N, m] each) plus scaled inputs, output and small blocks.
    cost.forward_bytes = f * (p * n * (4 * m + 4 * d + 1) + p * m * (d + 1) + m * d + n);
    // dphi_q, dphi_k, du_q, du_k plus the gradients and temporaries of size [p, N, D].
    cost.backward_bytes = f * (p * n * (4 * m + 6 * d + 2) + p * m * (d + 1));
    return cost;
  }

 private:
  // The projection for the current step: [m, D], cached per (epoch, D, dtype, device);
  // computed on the host and copied once per redraw (the same matrix on every device).
  Tensor projection(int64_t d, DType dtype, core::Device device) {
    int64_t epoch = redraw_ > 0 ? step_ / redraw_ : 0;
    if (!cached_.defined() || epoch != cached_epoch_ || cached_.dim(1) != d ||
        cached_.dtype() != dtype || cached_.device() != device) {
      uint64_t seed = mix64(seed_ ^ mix64(0x50455246ull + static_cast<uint64_t>(epoch)));
      cached_ = core::orthogonal_gaussian(features_, d, seed, dtype, device);
      cached_epoch_ = epoch;
    }
    return cached_;
  }

  int64_t features_;
  FeatureKernel kernel_;
  int64_t redraw_;
  double relu_eps_;
  uint64_t seed_;
  Tensor cached_;
  int64_t cached_epoch_ = -1;
};

LRA_REGISTER_ATTENTION(BackendInfo{
    "performer",
    "Performer FAVOR+: orthogonal random features (exp = softmax kernel, relu), O(N m D)",
    [](SpecReader& spec, const AttnShape&,
       const AttentionOptions& options) -> std::unique_ptr<Attention> {
      int64_t features = spec.get_int("features", 256);
      std::string kernel = spec.get_string("kernel", "exp");
      int64_t redraw = spec.get_int("redraw", 0);
      double relu_eps = spec.get_double("relu_eps", 1e-3);
      LRA_CHECK(features >= 1, "attention.features must be >= 1, got {}", features);
      LRA_CHECK(kernel == "exp" || kernel == "relu",
                "attention.kernel must be 'exp' or 'relu', got '{}'", kernel);
      LRA_CHECK(redraw >= 0, "attention.redraw must be >= 0 (0 = never), got {}", redraw);
      LRA_CHECK(relu_eps >= 0, "attention.relu_eps must be >= 0, got {}", relu_eps);
      return std::make_unique<Performer>(features,
                                         kernel == "exp" ? FeatureKernel::exp : FeatureKernel::relu,
                                         redraw, relu_eps, options);
    }});

}  // namespace
}  // namespace lra::attention
