#include "core/allocator.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/error.h"

namespace lra::core {

void keep_freed_host_memory() {
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

void* Allocator::allocate(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  void* ptr = raw_allocate(bytes);
  std::size_t live = live_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  std::size_t peak = peak_.load(std::memory_order_relaxed);
  while (live > peak && !peak_.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
  return ptr;
}

void Allocator::deallocate(void* ptr, std::size_t bytes) {
  if (ptr == nullptr) return;
  raw_deallocate(ptr, bytes);
  live_.fetch_sub(bytes, std::memory_order_relaxed);
}

namespace {

class CpuAllocator final : public Allocator {
 public:
  Device device() const override { return Device::cpu; }

 protected:
  void* raw_allocate(std::size_t bytes) override {
    constexpr std::size_t alignment = 64;
    std::size_t rounded = (bytes + alignment - 1) / alignment * alignment;
    void* ptr = std::aligned_alloc(alignment, rounded);
    if (ptr == nullptr) fail("cpu allocator: out of memory allocating {} bytes", bytes);
    return ptr;
  }
  void raw_deallocate(void* ptr, std::size_t) override { std::free(ptr); }
};

}  // namespace

Allocator* cuda_allocator();  // defined in core/cuda (or a stub when CUDA is not built)
void cuda_copy_bytes(void* dst, const void* src, std::size_t bytes);  // likewise

Allocator& allocator_for(Device device) {
  if (device == Device::cpu) {
    static CpuAllocator cpu;
    return cpu;
  }
  return *cuda_allocator();
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device,
                std::size_t bytes) {
  if (bytes == 0) return;
  if (dst_device == Device::cpu && src_device == Device::cpu) {
    std::memmove(dst, src, bytes);
    return;
  }
  cuda_copy_bytes(dst, src, bytes);
}

}  // namespace lra::core
