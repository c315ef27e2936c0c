#pragma once
// AdamW with global-norm gradient clipping, and the learning-rate schedule of the
// Nyströmformer LRA code (PyTorch OneCycleLR, linear annealing).
#include <cstdint>
#include <vector>

#include "core/parameter.h"

namespace lra::model {

struct Schedule {
  double lr = 1e-4;    // peak learning rate
  int64_t warmup = 0;  // steps from lr / 25 up to lr
  int64_t total = 1;   // steps; the last one reaches lr / 25 / 1e4
};
// Learning rate of optimizer step `step` (1-based), as OneCycleLR(max_lr = lr,
// pct_start = warmup / total, anneal_strategy = "linear", div_factor = 25,
// final_div_factor = 1e4): linear from lr/25 (step 1) to lr (step warmup), then linear
// down to lr/25/1e4 at step `total`. warmup 0 starts at the peak.
double learning_rate(const Schedule& schedule, int64_t step);

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-6, weight_decay = 0;
  double clip_norm = 0;  // clip the global gradient norm to this; 0 = off
};

class AdamW {
 public:
  AdamW(std::vector<core::Parameter*> params, AdamWConfig config);
  // Clips, updates every parameter with learning rate lr at 1-based step `step`.
  // Gradients are left as they are. On the CPU a non-finite gradient norm is an error
  // here; on CUDA everything (norm, clipping, update) stays on the device with no host
  // sync, and the norm is checked when last_grad_norm() reads it.
  void update(double lr, int64_t step);
  // The global gradient norm (before clipping) of the last update; on CUDA this reads it
  // back (a device sync). Throws lra::Error when it is not finite.
  double last_grad_norm() const;
  void zero_grad();
  // First and second moments, in parameter order (checkpointed).
  std::vector<core::Tensor>& first_moments() { return m_; }
  std::vector<core::Tensor>& second_moments() { return v_; }
  const std::vector<core::Parameter*>& parameters() const { return params_; }

 private:
  std::vector<core::Parameter*> params_;
  AdamWConfig config_;
  std::vector<core::Tensor> m_, v_;
  int64_t last_step_ = 0;
  core::Tensor norm_scale_;  // [norm, scale] of the last update, on the parameters' device
};

}  // namespace lra::model
