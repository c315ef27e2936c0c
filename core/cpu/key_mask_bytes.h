#pragma once
// A key mask [B, N] (0 = padding, any float dtype) read once into bytes, for the CPU
// kernels that apply it row by row (softmax, matmul + softmax, the depthwise conv).
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace lra::core::cpu {

// A key mask [B, N] as bytes, with the batches that have no padding marked so their rows
// take the unmasked path.
struct KeyMaskBytes {
  std::vector<unsigned char> keep, full;
  int64_t batches = 1, cols = 0;
  KeyMaskBytes(const Tensor& key_mask, int64_t row_length) : cols(row_length) {
    if (!key_mask.defined()) return;
    batches = key_mask.dim(0);
    keep.resize(static_cast<std::size_t>(key_mask.numel()));
    full.assign(static_cast<std::size_t>(batches), 1);
    for (int64_t i = 0; i < key_mask.numel(); ++i) {
      bool k = key_mask.dtype() == DType::f32 ? key_mask.data<float>()[i] != 0.0f
                                              : key_mask.data<double>()[i] != 0.0;
      keep[static_cast<std::size_t>(i)] = k;
      if (!k) full[static_cast<std::size_t>(i / cols)] = 0;
    }
  }
  // Keep bytes of batch b, or nullptr when every key of b is kept (or there is no mask).
  const unsigned char* of(int64_t b) const {
    if (keep.empty() || full[static_cast<std::size_t>(b)]) return nullptr;
    return keep.data() + b * cols;
  }
};

}  // namespace lra::core::cpu
