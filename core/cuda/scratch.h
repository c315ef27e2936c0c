#pragma once
// A device scratch buffer for the duration of an op, from the CUDA allocator (so it counts in
// live and peak bytes like any tensor: it is real memory the op needs). At least 8 bytes,
// so a zero-size request still gets a valid, double-aligned pointer.
#include <algorithm>
#include <cstddef>

#include "core/allocator.h"

namespace lra::core::cuda {

struct Scratch {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  explicit Scratch(std::size_t n) : bytes(std::max<std::size_t>(n, 8)) {
    ptr = allocator_for(Device::cuda).allocate(bytes);
  }
  ~Scratch() { allocator_for(Device::cuda).deallocate(ptr, bytes); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <typename T> T* as() { return static_cast<T*>(ptr); }
};

}  // namespace lra::core::cuda
