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

// Asks glibc to keep freed host blocks (up to its 32 MiB mmap limit) in the heap instead of
// returning them to the kernel, so same-sized buffers of repeated steps reuse warm pages
// instead of page-faulting fresh zeroed ones (~10% of a CPU training step, and most of
// the run-to-run noise of the attention benchmarks, otherwise). For loops that repeat one
// computation (training, benchmarks); sweeps leave it off, since freed-but-kept memory
// would hide from their peak-RSS column.
void keep_freed_host_memory();

// Copies `bytes` between buffers on any devices (host<->device copies are explicit and
// synchronous; no managed memory).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device,
                std::size_t bytes);

}  // namespace lra::core
