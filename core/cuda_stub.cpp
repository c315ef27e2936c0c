// Stands in for core/cuda when lra is built without CUDA.
#include "core/allocator.h"
#include "core/cuda_runtime_info.h"
#include "core/error.h"

namespace lra::core {

bool cuda_built() { return false; }
int cuda_device_count() { return 0; }
std::vector<std::string> cuda_device_descriptions() { return {}; }
std::string cuda_unavailable_reason() { return "CUDA not built (configure with -DLRA_CUDA=ON)"; }

Allocator* cuda_allocator() {
  fail("device cuda: lra was built without CUDA (configure with -DLRA_CUDA=ON and nvcc present)");
}

void cuda_copy_bytes(void*, const void*, std::size_t) {
  fail("device cuda: lra was built without CUDA (configure with -DLRA_CUDA=ON and nvcc present)");
}

}  // namespace lra::core
