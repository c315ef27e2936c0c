#include "core/cuda/check.h"

#include "core/error.h"

namespace lra::core::cuda {

void throw_cuda_error(const char* call, const char* file, int line, const char* name,
                      const char* message) {
  fail("CUDA call failed at {}:{}: {} returned {} ({})", file, line, call, name, message);
}

std::size_t max_shared_bytes_per_block() {
  static const std::size_t bytes = [] {
    int device = 0, limit = 0;
    LRA_CUDA_CHECK(cudaGetDevice(&device));
    LRA_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    return static_cast<std::size_t>(limit);
  }();
  return bytes;
}

}  // namespace lra::core::cuda
