#pragma once
// Test support: central finite differences against analytic gradients (f64).
#include <cmath>
#include <functional>

#include "core/tensor.h"

namespace lra::test {

// Relative error ||analytic - numeric||_2 / max(||numeric||_2, 1e-300) where numeric is
// the central difference (loss(x + h e_i) - loss(x - h e_i)) / 2h for every element of
// x (an f64 CPU tensor, perturbed in place and restored). `loss` must read x.
inline double finite_difference_error(core::Tensor& x, const core::Tensor& analytic,
                                      const std::function<double()>& loss, double h = 1e-6) {
  double* p = x.data<double>();
  const double* a = analytic.data<double>();
  double diff2 = 0, ref2 = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    double saved = p[i];
    p[i] = saved + h;
    double up = loss();
    p[i] = saved - h;
    double down = loss();
    p[i] = saved;
    double numeric = (up - down) / (2 * h);
    diff2 += (a[i] - numeric) * (a[i] - numeric);
    ref2 += numeric * numeric;
  }
  return std::sqrt(diff2) / std::max(std::sqrt(ref2), 1e-300);
}

// sum(w * y) for a fixed weight tensor w: a scalar loss whose gradient w.r.t. y is w.
inline double weighted_sum(const core::Tensor& y, const core::Tensor& w) {
  const double* yp = y.data<double>();
  const double* wp = w.data<double>();
  double s = 0;
  for (int64_t i = 0; i < y.numel(); ++i) s += yp[i] * wp[i];
  return s;
}

}  // namespace lra::test
