// Device query and the CUDA allocator (exact live/peak accounting through Allocator).
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/cuda/check.h"
#include "core/cuda_runtime_info.h"

namespace lra::core {

bool cuda_built() { return true; }

std::string cuda_unavailable_reason() {
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error of a missing driver
    return std::string("no CUDA device: ") + cudaGetErrorString(status);
  }
  if (count == 0) return "no CUDA device: none found";
  return {};
}

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

std::vector<std::string> cuda_device_descriptions() {
  std::vector<std::string> lines;
  int count = cuda_device_count();
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    LRA_CUDA_CHECK(cudaGetDeviceProperties(&prop, i));
    char line[512];
    std::snprintf(line, sizeof line, "cuda:%d %s, sm_%d%d, %.0f GiB, %d SMs", i, prop.name,
                  prop.major, prop.minor, static_cast<double>(prop.totalGlobalMem) / (1u << 30),
                  prop.multiProcessorCount);
    lines.emplace_back(line);
  }
  return lines;
}

namespace {

// cudaMalloc with a cache of freed blocks by rounded size: training steps allocate the
// same shapes every step, so after the first step allocation costs no driver calls.
// live/peak bytes (Allocator) count the bytes tensors asked for, as on the CPU.
class CudaAllocator final : public Allocator {
 public:
  Device device() const override { return Device::cuda; }

 protected:
  void* raw_allocate(std::size_t bytes) override {
    std::size_t rounded = round_up(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = cache_.find(rounded);
      if (it != cache_.end()) {
        void* ptr = it->second;
        cache_.erase(it);
        return ptr;
      }
    }
    void* ptr = nullptr;
    if (cudaMalloc(&ptr, rounded) != cudaSuccess) {
      cudaGetLastError();
      release_cache();  // give cached blocks back to the driver and retry once
      LRA_CUDA_CHECK(cudaMalloc(&ptr, rounded));
    }
    return ptr;
  }
  void raw_deallocate(void* ptr, std::size_t bytes) override {
    std::lock_guard<std::mutex> lock(mutex_);
    cache_.emplace(round_up(bytes), ptr);
  }

 private:
  static std::size_t round_up(std::size_t bytes) { return (bytes + 511) / 512 * 512; }
  void release_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    cudaDeviceSynchronize();
    for (auto& [size, ptr] : cache_) cudaFree(ptr);
    cache_.clear();
  }
  std::mutex mutex_;
  std::multimap<std::size_t, void*> cache_;
};

}  // namespace

Allocator* cuda_allocator() {
  // Never destroyed: blocks may be freed by static tensors after main returns.
  static CudaAllocator* allocator = new CudaAllocator;
  return allocator;
}

void cuda_copy_bytes(void* dst, const void* src, std::size_t bytes) {
  LRA_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
}

}  // namespace lra::core
