#pragma once
// One row of the masked softmax and of its backward: shared by the softmax op
// (core/cpu/rowwise.cpp) and the fused matmul + softmax (core/cpu/matmul_softmax.cpp), so
// both give the same values.
#include <Eigen/Core>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "core/cpu/key_mask_bytes.h"
#include "core/tensor.h"

namespace lra::core::cpu {

// y = softmax(s * x) over one row of `cols`; keys with keep[c] == 0 get exactly 0, and a
// row with no kept key is all 0. keep == nullptr: every key.
template <typename T>
void softmax_row(const T* x, T* y, int64_t cols, const unsigned char* keep, T s) {
  T max_logit = -std::numeric_limits<T>::infinity();
  if (keep) {
    for (int64_t c = 0; c < cols; ++c)
      if (keep[c]) max_logit = std::max(max_logit, s * x[c]);
  } else if (cols > 0) {
    Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> xa(x, cols);
    max_logit = s >= T(0) ? s * xa.maxCoeff() : s * xa.minCoeff();
  }
  if (max_logit == -std::numeric_limits<T>::infinity()) {
    std::fill(y, y + cols, T(0));  // every key masked: the row attends to nothing
    return;
  }
  // Vectorised exp over the row (Eigen), then masked entries set to exactly 0.
  Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> xa(x, cols);
  Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> ya(y, cols);
  ya = (s * xa - max_logit).exp();
  if (keep)
    for (int64_t c = 0; c < cols; ++c)
      if (!keep[c]) y[c] = T(0);
  T inv = T(1) / ya.sum();
  ya *= inv;
}

// dx = s * y * (dy - sum(dy * y)) over one row.
template <typename T> void softmax_backward_row(const T* y, const T* dy, T* dx, int64_t cols, T s) {
  Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> ya(y, cols), ga(dy, cols);
  Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> da(dx, cols);
  T dot = (ya * ga).sum();  // vectorised; a fixed order for a given row length and alignment
  da = s * ya * (ga - dot);
}

}  // namespace lra::core::cpu
