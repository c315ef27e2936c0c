#pragma once
// Per-device allocator with exact byte accounting. Every tensor buffer goes through it,
// so live_bytes()/peak_bytes() are what memory sweeps report.
#include <atomic>
#include <cstddef>

#include "core/device.h"

namespace lra::core {

class Allocator {
 public:
  virtual ~Allocator() = default;
  // Returns a buffer of `bytes` bytes (64-byte aligned on CPU); never null for bytes > 0.
  void* allocate(std::size_t bytes);
  void deallocate(void* ptr, std::size_t bytes);

  std::size_t live_bytes() const { return live_.load(std::memory_order_relaxed); }
  std::size_t peak_bytes() const { return peak_.load(std::memory_order_relaxed); }
  // Sets the peak to the current live bytes (start of a measured region).
  void reset_peak() { peak_.store(live_bytes(), std::memory_order_relaxed); }
  virtual Device device() const = 0;

 protected:
  virtual void* raw_allocate(std::size_t bytes) = 0;
  virtual void raw_deallocate(void* ptr, std::size_t bytes) = 0;

 private:
  std::atomic<std::size_t> live_{0};
  std::atomic<std::size_t> peak_{0};
};

// The process-wide allocator of a device. CUDA throws lra::Error when not built/present.
Allocator& allocator_for(Device device);

// Copies `bytes` between buffers on any devices (host<->device copies are explicit and
// synchronous; no managed memory).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device,
                std::size_t bytes);

}  // namespace lra::core
