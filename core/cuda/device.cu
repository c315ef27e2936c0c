// Device query and the CUDA allocator (exact live/peak accounting through Allocator).
#include <cstdio>
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

class CudaAllocator final : public Allocator {
 public:
  Device device() const override { return Device::cuda; }

 protected:
  void* raw_allocate(std::size_t bytes) override {
    void* ptr = nullptr;
    LRA_CUDA_CHECK(cudaMalloc(&ptr, bytes));
    return ptr;
  }
  void raw_deallocate(void* ptr, std::size_t) override { cudaFree(ptr); }
};

}  // namespace

Allocator* cuda_allocator() {
  static CudaAllocator allocator;
  return &allocator;
}

}  // namespace lra::core
