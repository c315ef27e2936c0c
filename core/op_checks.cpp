#include "core/op_checks.h"

namespace lra::core {

Device one_device(const char* op, std::initializer_list<const Tensor*> tensors, Device fallback) {
  const Tensor* first = nullptr;
  for (const Tensor* t : tensors) {
    if (!t->defined()) continue;
    if (!first) first = t;
    LRA_CHECK(t->device() == first->device(),
              "{}: tensors on {} ({}) and {} ({}) — copy one first", op,
              device_name(first->device()), first->shape_str(), device_name(t->device()),
              t->shape_str());
  }
  return first ? first->device() : fallback;
}

void check_key_mask(const char* op, const Tensor& mask, int64_t batch, int64_t seq) {
  if (!mask.defined()) return;
  LRA_CHECK(mask.rank() == 2 && mask.dim(0) == batch && mask.dim(1) == seq,
            "{}: key mask of shape {} does not match [batch, seq] = [{}, {}]", op,
            mask.shape_str(), batch, seq);
  LRA_CHECK(mask.dtype() == DType::f32 || mask.dtype() == DType::f64,
            "{}: a key mask holds f32 or f64, got {}", op, dtype_name(mask.dtype()));
}

void fail_no_cuda(const char* op) {
  fail("{}: tensors on device cuda, but lra was built without CUDA (configure with "
       "-DLRA_CUDA=ON and nvcc present)",
       op);
}

}  // namespace lra::core
