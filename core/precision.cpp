#include "core/precision.h"

#include <atomic>

namespace lra::core {
namespace {
std::atomic<MatmulPrecision> current{MatmulPrecision::fp32};
}

void set_matmul_precision(MatmulPrecision precision) { current.store(precision); }
MatmulPrecision matmul_precision() { return current.load(); }
const char* matmul_precision_name(MatmulPrecision precision) {
  return precision == MatmulPrecision::tf32 ? "tf32" : "fp32";
}

}  // namespace lra::core
