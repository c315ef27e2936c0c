#include "core/cuda/check.h"

#include "core/error.h"

namespace lra::core::cuda {

void throw_cuda_error(const char* call, const char* file, int line, const char* name,
                      const char* message) {
  fail("CUDA call failed at {}:{}: {} returned {} ({})", file, line, call, name, message);
}

}  // namespace lra::core::cuda
