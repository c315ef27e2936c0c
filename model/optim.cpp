#include "model/optim.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/ops_train.h"

namespace lra::model {

double learning_rate(const Schedule& s, int64_t step) {
  LRA_CHECK(s.total >= 1 && s.warmup >= 0 && s.warmup <= s.total,
            "schedule: warmup {} must be in [0, steps = {}]", s.warmup, s.total);
  double peak = s.lr, initial = s.lr / 25.0, final_lr = initial / 1e4;
  // OneCycleLR counts from 0; its phase ends at pct_start * total - 1 and total - 1.
  double t = static_cast<double>(std::clamp<int64_t>(step, 1, s.total) - 1);
  double warm_end = static_cast<double>(s.warmup) - 1.0;
  double last = static_cast<double>(s.total) - 1.0;
  if (s.warmup >= 1 && t <= warm_end) {
    if (warm_end <= 0) return peak;
    return initial + (peak - initial) * t / warm_end;
  }
  double start = std::max(warm_end, 0.0);
  if (last <= start) return peak;
  double pct = (t - start) / (last - start);
  return peak + (final_lr - peak) * pct;
}

AdamW::AdamW(std::vector<core::Parameter*> params, AdamWConfig config)
    : params_(std::move(params)), config_(config) {
  for (core::Parameter* p : params_) {
    m_.push_back(core::Tensor::zeros(p->value.shape(), p->value.dtype(), p->value.device()));
    v_.push_back(core::Tensor::zeros(p->value.shape(), p->value.dtype(), p->value.device()));
  }
}

void AdamW::update(double lr, int64_t step) {
  last_step_ = step;
  // The whole list in one call each (a few launches on CUDA, no host sync there).
  std::vector<core::Tensor*> values, m, v;
  std::vector<const core::Tensor*> grads;
  std::vector<bool> decay;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    values.push_back(&params_[i]->value);
    grads.push_back(&params_[i]->grad);
    m.push_back(&m_[i]);
    v.push_back(&v_[i]);
    decay.push_back(params_[i]->decay);
  }
  norm_scale_ = core::global_norm_scale(grads, config_.clip_norm);
  // On the CPU the norm is at hand: a non-finite one stops here, before any update.
  if (norm_scale_.device() == core::Device::cpu) last_grad_norm();
  core::AdamWParams ap;
  ap.lr = lr;
  ap.beta1 = config_.beta1;
  ap.beta2 = config_.beta2;
  ap.eps = config_.eps;
  ap.weight_decay = config_.weight_decay;
  ap.step = step;
  core::adamw_update_all(values, grads, m, v, decay, ap, norm_scale_);
}

double AdamW::last_grad_norm() const {
  if (!norm_scale_.defined()) return 0.0;
  double norm = norm_scale_.to_vector()[0];
  LRA_CHECK(std::isfinite(norm), "AdamW: gradient norm is {} at step {}", norm, last_step_);
  return norm;
}

void AdamW::zero_grad() {
  for (core::Parameter* p : params_) p->zero_grad();
}

}  // namespace lra::model
