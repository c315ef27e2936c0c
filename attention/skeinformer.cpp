// Skeinformer (Chen et al., NAACL 2022): sketched softmax attention built from N x d blocks.
//   1. Pilot sampling: d query rows J per [b, h], uniform with replacement among real
//      tokens; exact B_J = softmax(Q_J K^T / sqrt(D)) with padded columns 0.
//   2. Column sampling: d distinct real keys J' without replacement, with probability
//      proportional to ||B_J e_i|| ||V_i|| (importance) or uniform.
//   3. Row normalisation of A_J' = exp(Q K_J'^T / sqrt(D)):
//      adaptive: g_i = exp(mean of row i's sampled logits), dhat = A_J' 1 + (n - d) g,
//                R = diag(dhat)^-1 (A_J' V_J' + g v^T), v = sum of the unselected real V rows;
//      simple:   R = softmax over the sampled columns only (Informer's normalisation);
//      none:     R = diag(D)^-1 A_J' V_J' with the exact row sums D (the paper's
//                "w/o row normalisation" ablation; O(N^2 D) time, N x 64 blocks of memory).
//   4. Pilot reuse: rows J of the output are the exact B_J V.
// d = min(samples, N) slots; a sequence with n real tokens uses min(d, n) columns, so
// samples >= n selects every real key and the output is exact softmax attention. The draws
// are a pure function of (layer seed, step); the backward is exact with the drawn index
// sets held fixed (they are saved in the Context).
#include <algorithm>
#include <cmath>

#include "attention/attention.h"
#include "core/ops.h"
#include "core/ops_random.h"
#include "core/rng.h"

namespace lra::attention {
namespace {

using core::IndexSample;
using core::Shape;
using core::SkeinNorm;

using core::mix64;

enum class Normalization { adaptive, simple, none };

class Skeinformer final : public Attention {
 public:
  Skeinformer(int64_t samples, bool importance, Normalization norm, bool pilot_reuse,
              const AttentionOptions& options)
      : samples_(samples),
        importance_(importance),
        norm_(norm),
        pilot_reuse_(pilot_reuse),
        seed_(options.seed) {}

  std::string_view name() const override { return "skeinformer"; }

  void forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
               Tensor& out, Context& saved) override {
    check_attention_inputs("skeinformer attention", q, k, v, key_mask);
    int64_t b = q.dim(0), h = q.dim(1), n = q.dim(2), d = q.dim(3);
    int64_t slots = std::min(samples_, n);
    double scale = 1.0 / std::sqrt(static_cast<double>(d));
    uint64_t base = mix64(seed_ ^ mix64(0x534b45494eull + static_cast<uint64_t>(step_)));
    saved.clear();
    if (key_mask.defined()) saved["key_mask"] = key_mask;

    // 1. Pilot rows and their exact attention rows.
    IndexSample pilot;
    Tensor qj, bj;
    if (importance_ || pilot_reuse_) {
      pilot = core::sample_rows_uniform(b, h, n, slots, key_mask, mix64(base ^ 1), q.device());
      qj = core::gather_rows(q, pilot.index, pilot.valid);                    // [B, H, d, D]
      bj = core::matmul_softmax(qj, k, false, true, key_mask, scale);  // [B, H, d, N]
    }
    // 2. Columns.
    Tensor weight;
    if (importance_) {
      Tensor ones_row = Tensor::full(Shape{1, slots}, 1.0, q.dtype(), q.device());
      Tensor col_sq = core::matmul(ones_row, core::mul(bj, bj));  // [B, H, 1, N]
      Tensor v_sq = core::sum_rows(core::mul(v, v));              // [B, H, N]
      weight = core::mul(col_sq.reshape(v_sq.shape()), v_sq);     // p_i^2
    }
    IndexSample cols =
        core::sample_columns(weight, 0.5, b, h, n, slots, key_mask, mix64(base ^ 2), q.device());
    Tensor kj = core::gather_rows(k, cols.index, cols.valid);  // [B, H, d, D]
    Tensor vj = core::gather_rows(v, cols.index, cols.valid);
    // 3. Normalised sketch.
    Tensor logits = core::matmul(q, kj, false, true, scale);  // [B, H, N, d]
    Tensor lse;
    SkeinNorm mode = norm_ == Normalization::adaptive ? SkeinNorm::adaptive
                     : norm_ == Normalization::simple ? SkeinNorm::simple
                                                      : SkeinNorm::exact;
    if (norm_ == Normalization::none) lse = core::masked_logsumexp(q, k, key_mask, scale);
    core::SkeinWeights w = core::skein_weights(logits, cols.valid, key_mask, mode, lse);
    logits = Tensor();
    Tensor num = core::matmul(w.e, vj);  // [B, H, N, D]
    Tensor mask_row, vbar;
    if (norm_ == Normalization::adaptive) {
      // v^T = (sum of real rows) - (sum of drawn rows); vj rows of unused slots are 0.
      mask_row = core::expand_key_mask(key_mask, b, h, n, q.dtype(), q.device());
      Tensor ones_slots = Tensor::full(Shape{1, slots}, 1.0, q.dtype(), q.device());
      vbar = core::matmul(mask_row, v);  // [B, H, 1, D]
      core::gemm(ones_slots, false, vj, false, vbar, -1.0, 1.0);
      core::gemm(w.g.reshape(Shape{b, h, n, 1}), false, vbar, false, num, 1.0, 1.0);
    }
    Tensor rd = core::safe_reciprocal(w.dhat);
    Tensor r = core::scale_rows(num, rd);
    // 4. Pilot rows replaced by the exact B_J V.
    if (pilot_reuse_) {
      Tensor bjv = core::matmul(bj, v);  // [B, H, d, D]
      out = r.clone();
      core::scatter_rows(out, pilot.index, pilot.owner, bjv, core::ScatterMode::assign);
    } else {
      out = r;
    }

    saved["q"] = q;
    saved["k"] = k;
    saved["v"] = v;
    saved["col_index"] = cols.index;
    saved["col_valid"] = cols.valid;
    saved["kj"] = kj;
    saved["vj"] = vj;
    saved["e"] = w.e;
    saved["g"] = w.g;
    saved["dhat"] = w.dhat;
    saved["rd"] = rd;
    saved["r"] = r;
    if (norm_ == Normalization::none) saved["lse"] = lse;
    if (norm_ == Normalization::adaptive) {
      saved["mask_row"] = mask_row;
      saved["vbar"] = vbar;
    }
    if (importance_ || pilot_reuse_) {
      saved["pilot_index"] = pilot.index;
      saved["pilot_valid"] = pilot.valid;
      saved["pilot_owner"] = pilot.owner;
    }
    if (pilot_reuse_) {
      saved["qj"] = qj;
      saved["bj"] = bj;
    }
  }

  void backward(const Tensor& d_out, const Context& saved, Tensor& d_q, Tensor& d_k,
                Tensor& d_v) override {
    const Tensor& q = saved.at("q");
    const Tensor& k = saved.at("k");
    const Tensor& v = saved.at("v");
    const Tensor& col_index = saved.at("col_index");
    const Tensor& col_valid = saved.at("col_valid");
    const Tensor& kj = saved.at("kj");
    const Tensor& vj = saved.at("vj");
    const Tensor& rd = saved.at("rd");
    const Tensor& r = saved.at("r");
    Tensor key_mask = saved.has("key_mask") ? saved.at("key_mask") : Tensor();
    core::SkeinWeights w{saved.at("e"), saved.at("g"), saved.at("dhat")};
    core::check_same_shape(d_out, r, "skeinformer backward (d_out)");
    int64_t b = q.dim(0), h = q.dim(1), n = q.dim(2), d = q.dim(3);
    int64_t slots = kj.dim(2);
    double scale = 1.0 / std::sqrt(static_cast<double>(d));
    Shape rows{b, h, n};

    // Output rows owned by a pilot row take their gradient from B_J V only.
    Tensor dr = d_out, dbjv;
    if (pilot_reuse_) {
      dbjv = core::gather_rows(d_out, saved.at("pilot_index"), saved.at("pilot_owner"));
      dr = d_out.clone();
      core::scatter_rows(dr, saved.at("pilot_index"), saved.at("pilot_owner"), {},
                         core::ScatterMode::zero);
    }
    // R = num / dhat.
    Tensor dnum = core::scale_rows(dr, rd);
    Tensor ddhat = core::scale(core::mul(core::sum_rows(core::mul(dr, r)), rd.reshape(rows)), -1.0);
    Tensor de = core::matmul(dnum, vj, false, true);  // [B, H, N, d]
    Tensor dvj = core::matmul(w.e, dnum, true, false);
    Tensor dg;
    d_v = Tensor::zeros(v.shape(), v.dtype(), v.device());
    if (norm_ == Normalization::adaptive) {
      const Tensor& vbar = saved.at("vbar");
      Tensor g_col = w.g.reshape(Shape{b, h, n, 1});
      dg = core::matmul(dnum, vbar, false, true).reshape(rows);
      Tensor dvbar = core::matmul(g_col, dnum, true, false);  // [B, H, 1, D]
      core::gemm(saved.at("mask_row"), true, dvbar, false, d_v, 1.0, 0.0);
      Tensor ones_col = Tensor::full(Shape{slots, 1}, 1.0, q.dtype(), q.device());
      core::gemm(ones_col, false, dvbar, false, dvj, -1.0, 1.0);
    }
    SkeinNorm mode = norm_ == Normalization::adaptive ? SkeinNorm::adaptive
                     : norm_ == Normalization::simple ? SkeinNorm::simple
                                                      : SkeinNorm::exact;
    Tensor dl = core::skein_weights_backward(w, col_valid, key_mask, mode, de, ddhat, dg);
    d_q = core::matmul(dl, kj, false, false, scale);
    Tensor dkj = core::matmul(dl, q, true, false, scale);  // [B, H, d, D]
    d_k = Tensor::zeros(k.shape(), k.dtype(), k.device());
    core::scatter_rows(d_k, col_index, col_valid, dkj, core::ScatterMode::add);
    core::scatter_rows(d_v, col_index, col_valid, dvj, core::ScatterMode::add);
    if (norm_ == Normalization::none) {
      // E = exp(L - lse): dlse = -sum_s dL.
      Tensor dlse = core::scale(core::sum_rows(dl), -1.0);
      core::masked_logsumexp_backward(q, k, key_mask, scale, saved.at("lse"), dlse, d_q, d_k);
    }
    if (pilot_reuse_) {
      const Tensor& bj = saved.at("bj");
      const Tensor& qj = saved.at("qj");
      core::gemm(bj, true, dbjv, false, d_v, 1.0, 1.0);
      // B_J = softmax(Q_J Kᵀ) with dB_J = dBJV Vᵀ ([B, H, d, N])
      core::ScoreGrads g = core::softmax_scores_backward(bj, qj, k, dbjv, v, scale);
      core::scatter_rows(d_q, saved.at("pilot_index"), saved.at("pilot_valid"), g.d_q,
                         core::ScatterMode::add);
      core::add_into(d_k, g.d_k);
    }
  }

  Cost cost(const AttnShape& shape) const override {
    double p = static_cast<double>(shape.batch * shape.heads);
    double n = static_cast<double>(shape.seq), dd = static_cast<double>(shape.head_dim);
    double s = static_cast<double>(std::min<int64_t>(samples_, shape.seq));
    bool pilot = importance_ || pilot_reuse_;
    Cost c;
    double f = 0, bwd = 0, fb = 0, bb = 0;
    if (pilot) {
      f += p * s * n * (2 * dd + 5);  // Q_J K^T and the masked softmax
      fb += p * s * (n + dd);
    }
    if (importance_) {
      f += p * (3 * s * n + 3 * n * dd + 2 * n);
      fb += p * (s * n + 2 * n);
    }
    if (pilot_reuse_) {
      f += p * s * n * 2 * dd;          // B_J V
      bwd += p * s * n * (6 * dd + 4);  // dB_J, dV, softmax backward, dQ_J, dK
      bb += p * s * (2 * n + 2 * dd);
    }
    // Logits, weights, E V_J', fill-in, scaling.
    f += p * n * s * (4 * dd + 6) + p * (2 * n * dd + 2 * s * dd) + 3 * p * n * dd;
    fb += p * (2 * n * s + 2 * s * dd + n * dd + 3 * n);
    // dE, dV_J', weights backward, dQ, dK_J', fill-in terms.
    bwd += p * n * s * (8 * dd + 4) + p * (6 * n * dd + 2 * s * dd);
    bb += p * (2 * n * s + 2 * s * dd + 4 * n * dd);
    if (norm_ == Normalization::none) {
      f += p * n * n * (2 * dd + 3);
      bwd += p * n * n * (6 * dd + 3);
      fb += p * (64 * n + n);
      bb += p * (64 * n + n);
    }
    c.forward_flops = f;
    c.backward_flops = bwd;
    c.forward_bytes = 4.0 * fb;  // f32 elements
    c.backward_bytes = 4.0 * bb;
    return c;
  }

 private:
  int64_t samples_;
  bool importance_;
  Normalization norm_;
  bool pilot_reuse_;
  uint64_t seed_;
};

LRA_REGISTER_ATTENTION(BackendInfo{
    "skeinformer",
    "Skeinformer: pilot + importance column sampling, adaptive row normalisation, O(N d D)",
    [](SpecReader& spec, const AttnShape&,
       const AttentionOptions& options) -> std::unique_ptr<Attention> {
      int64_t samples = spec.get_int("samples", 256);
      std::string sampling = spec.get_string("column_sampling", "importance");
      std::string norm = spec.get_string("normalization", "adaptive");
      bool pilot_reuse = spec.get_bool("pilot_reuse", true);
      LRA_CHECK(samples >= 1, "attention.samples must be >= 1, got {}", samples);
      LRA_CHECK(sampling == "importance" || sampling == "uniform",
                "attention.column_sampling must be 'importance' or 'uniform', got '{}'", sampling);
      LRA_CHECK(norm == "adaptive" || norm == "simple" || norm == "none",
                "attention.normalization must be 'adaptive', 'simple' or 'none', got '{}'", norm);
      Normalization mode = norm == "adaptive" ? Normalization::adaptive
                           : norm == "simple" ? Normalization::simple
                                              : Normalization::none;
      return std::make_unique<Skeinformer>(samples, sampling == "importance", mode, pilot_reuse,
                                           options);
    }});

}  // namespace
}  // namespace lra::attention
