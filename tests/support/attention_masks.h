#pragma once
// Key masks the fused-attention tests share: batch 0 with its last third padded, batch 1
// (when there is one) without any real key, the rest all tokens.
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace lra::test {

inline core::Tensor tail_padded_mask(int64_t batch, int64_t n, core::DType dtype) {
  std::vector<double> m(static_cast<std::size_t>(batch * n), 1.0);
  for (int64_t j = n - n / 3; j < n; ++j) m[static_cast<std::size_t>(j)] = 0;  // tail padding
  if (batch > 1)
    for (int64_t j = 0; j < n; ++j) m[static_cast<std::size_t>(n + j)] = 0;   // no real key
  return core::Tensor::from_values(core::Shape{batch, n}, m, dtype);
}

}  // namespace lra::test
