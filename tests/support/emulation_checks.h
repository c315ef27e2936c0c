#pragma once
// Shared by the tests that run CUDA kernel source under tests/support/cuda_emulation.h:
// fresh inputs and the comparison with the CPU op a kernel must match.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/rng.h"
#include "core/tensor.h"

namespace lra::test {

inline core::Tensor emulation_randn(const core::Shape& shape, uint64_t seed, core::DType dtype,
                                    double scale = 1.0) {
  core::Tensor t = core::Tensor::empty(shape, dtype);
  core::fill_normal(t, seed, 0, 0.0, scale);
  return t;
}

// Max abs error relative to the largest reference magnitude (at least `floor`: a reference
// that is zero but for rounding, as dZ at m = 1, is compared against its inputs' scale);
// non-finite references must be matched exactly, and every result must be finite where the
// reference is.
inline double rel_error(const core::Tensor& got, const core::Tensor& want, const char* what,
                        double floor = 1e-30) {
  auto g = got.to_vector(), w = want.to_vector();
  EXPECT_EQ(g.size(), w.size()) << what;
  double scale = floor, err = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    if (!std::isfinite(w[i])) {
      EXPECT_EQ(g[i], w[i]) << what << " element " << i;
      continue;
    }
    if (!std::isfinite(g[i])) return std::numeric_limits<double>::infinity();
    scale = std::max(scale, std::abs(w[i]));
    err = std::max(err, std::abs(g[i] - w[i]));
  }
  return err / scale;
}

}  // namespace lra::test
