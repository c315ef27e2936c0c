#pragma once
// A trainable tensor with its gradient, registered by name (e.g. "layer0.attn.linformer_e").
#include <string>

#include "core/tensor.h"

namespace lra::core {

struct Parameter {
  std::string name;
  Tensor value;
  Tensor grad;        // same shape as value; backward passes accumulate into it
  bool decay = true;  // AdamW weight decay applies (false for biases and LayerNorm)

  Parameter() = default;
  Parameter(std::string n, Tensor v, bool d = true)
      : name(std::move(n)), value(std::move(v)), grad(Tensor::zeros(value.shape(), value.dtype(), value.device())), decay(d) {}
  void zero_grad() { grad.fill(0.0); }
};

}  // namespace lra::core
