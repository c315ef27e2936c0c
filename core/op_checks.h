#pragma once
// Checks shared by the op front ends (core/ops*.cpp): every tensor of an op on one device,
// and the error for a CUDA tensor in a build without CUDA.
#include <initializer_list>

#include "core/tensor.h"

namespace lra::core {

// The one device all defined tensors of an op live on (`fallback` when none is defined);
// copies between devices are explicit, so a mix is an error naming both tensors.
Device one_device(const char* op, std::initializer_list<const Tensor*> tensors,
                  Device fallback = Device::cpu);

// A key mask (undefined = no padding) is [batch, seq] of 1 (real) / 0 (padding), f32 or f64.
void check_key_mask(const char* op, const Tensor& mask, int64_t batch, int64_t seq);

// The error for a cuda tensor reaching an op of a build without CUDA.
[[noreturn]] void fail_no_cuda(const char* op);

}  // namespace lra::core
