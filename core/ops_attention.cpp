// Validation, output allocation and device dispatch for core/ops_attention.h.
#include "core/ops_attention.h"

#include "core/cpu/attention_kernels.h"
#include "core/ops.h"
#include "core/op_checks.h"
#ifdef LRA_WITH_CUDA
#include "core/cuda/attention_kernels.h"
// Runs the kernel of the device the op's tensors live on.
#define LRA_ATTN_RUN(device, fn, ...) \
  ((device) == Device::cuda ? cuda::fn(__VA_ARGS__) : cpu::fn(__VA_ARGS__))
#else
// A CUDA tensor in a build without CUDA cannot exist (no allocator); still say so clearly.
#define LRA_ATTN_RUN(device, fn, ...) \
  ((device) == Device::cuda ? (fail_no_cuda(#fn), cpu::fn(__VA_ARGS__)) : cpu::fn(__VA_ARGS__))
#endif

namespace lra::core {
namespace {



void require_defined(const char* op, const Tensor& t) {
  LRA_CHECK(t.defined(), "{}: tensor is undefined", op);
}

Tensor unary(const char* op, cpu::AttnUnary kind, const Tensor& x) {
  require_defined(op, x);
  one_device(op, {&x});
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  LRA_ATTN_RUN(x.device(), attn_unary, kind, x, y);
  return y;
}

Tensor unary_backward(const char* op, cpu::AttnUnary kind, const Tensor& xy, const Tensor& dy) {
  require_defined(op, xy);
  check_same_shape(xy, dy, op);
  check_same_dtype(xy, dy, op);
  one_device(op, {&xy, &dy});
  Tensor dx = Tensor::empty(xy.shape(), xy.dtype(), xy.device());
  LRA_ATTN_RUN(xy.device(), attn_unary_backward, kind, xy, dy, dx);
  return dx;
}

void check_seq_mask(const char* op, const Tensor& x, const Tensor& mask) {
  check_rank(x, 3, 4, op);
  LRA_CHECK(mask.defined(), "{}: mask is undefined", op);
  check_key_mask(op, mask, x.dim(0), x.dim(-2));
  one_device(op, {&x, &mask});
}

void check_square(const char* op, const Tensor& a) {
  check_rank(a, 2, 4, op);
  LRA_CHECK(a.dim(-1) == a.dim(-2), "{}: matrices of {} are not square", op, a.shape_str());
}

}  // namespace

Tensor elu_plus_one(const Tensor& x) { return unary("elu_plus_one", cpu::AttnUnary::elu_plus_one, x); }
Tensor elu_plus_one_backward(const Tensor& x, const Tensor& dy) {
  return unary_backward("elu_plus_one_backward", cpu::AttnUnary::elu_plus_one, x, dy);
}
Tensor exp(const Tensor& x) { return unary("exp", cpu::AttnUnary::exp, x); }
Tensor exp_backward(const Tensor& y, const Tensor& dy) {
  return unary_backward("exp_backward", cpu::AttnUnary::exp, y, dy);
}
Tensor reciprocal_or_zero(const Tensor& x) {
  return unary("reciprocal_or_zero", cpu::AttnUnary::reciprocal_or_zero, x);
}
Tensor reciprocal_or_zero_backward(const Tensor& y, const Tensor& dy) {
  return unary_backward("reciprocal_or_zero_backward", cpu::AttnUnary::reciprocal_or_zero, y, dy);
}

Tensor mask_seq(const Tensor& x, const Tensor& key_mask) {
  check_seq_mask("mask_seq", x, key_mask);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  LRA_ATTN_RUN(x.device(), mask_seq, x, key_mask, y);
  return y;
}

Tensor set_rows_identity(const Tensor& a, const Tensor& row_mask) {
  check_seq_mask("set_rows_identity", a, row_mask);
  check_square("set_rows_identity", a);
  Tensor y = Tensor::empty(a.shape(), a.dtype(), a.device());
  LRA_ATTN_RUN(a.device(), set_rows_identity, a, row_mask, y);
  return y;
}

Tensor pinv_init(const Tensor& a) {
  check_square("pinv_init", a);
  one_device("pinv_init", {&a});
  Tensor z = Tensor::empty(a.shape(), a.dtype(), a.device());
  LRA_ATTN_RUN(a.device(), pinv_init, a, z);
  return z;
}

Tensor pinv_init_backward(const Tensor& a, const Tensor& dz0) {
  check_square("pinv_init_backward", a);
  check_same_shape(a, dz0, "pinv_init_backward");
  check_same_dtype(a, dz0, "pinv_init_backward");
  one_device("pinv_init_backward", {&a, &dz0});
  Tensor da = Tensor::empty(a.shape(), a.dtype(), a.device());
  LRA_ATTN_RUN(a.device(), pinv_init_backward, a, dz0, da);
  return da;
}

namespace {
// One step as whole-batch GEMMs and scaled copies: the CUDA path for landmark counts whose
// step does not fit one thread block's shared memory (cuda::pinv_step_fits).
PinvStep composed_step(const Tensor& a, const Tensor& z, Tensor& next) {
  PinvStep s{z, matmul(a, z), Tensor(), Tensor()};
  s.u1 = scale(s.p, 7.0);
  gemm(s.p, false, s.p, false, s.u1, -1.0, 1.0);
  s.u2 = scale(s.p, 15.0);
  gemm(s.p, false, s.u1, false, s.u2, -1.0, 1.0);
  next = scale(z, 13.0 / 4.0);
  gemm(z, false, s.u2, false, next, -0.25, 1.0);
  return s;
}

// Backward of one step given d_next: adds dA into d_a, returns dZ.
Tensor composed_step_backward(const Tensor& a, const PinvStep& s, const Tensor& d_next, Tensor& d_a) {
  // Z' = 13/4 Z − 1/4 Z U2
  Tensor d_z = scale(d_next, 13.0 / 4.0);
  gemm(d_next, false, s.u2, true, d_z, -0.25, 1.0);
  Tensor d_u2 = matmul(s.z, d_next, true, false, -0.25);
  // U2 = 15P − P U1
  Tensor d_p = scale(d_u2, 15.0);
  gemm(d_u2, false, s.u1, true, d_p, -1.0, 1.0);
  Tensor d_u1 = matmul(s.p, d_u2, true, false, -1.0);
  // U1 = 7P − P P
  add_into(d_p, d_u1, 7.0);
  gemm(d_u1, false, s.p, true, d_p, -1.0, 1.0);
  gemm(s.p, true, d_u1, false, d_p, -1.0, 1.0);
  // P = A Z
  gemm(d_p, false, s.z, true, d_a, 1.0, 1.0);
  gemm(a, true, d_p, false, d_z, 1.0, 1.0);
  return d_z;
}
}  // namespace

PinvIteration pinv_iterate(const Tensor& a, const Tensor& z0, int64_t iters) {
  check_square("pinv_iterate", a);
  check_same_shape(a, z0, "pinv_iterate");
  check_same_dtype(a, z0, "pinv_iterate");
  one_device("pinv_iterate", {&a, &z0});
  LRA_CHECK(iters >= 0, "pinv_iterate: iterations must be >= 0, got {}", iters);
  PinvIteration r;
  auto fresh = [&] { return Tensor::empty(a.shape(), a.dtype(), a.device()); };
  if (a.device() == Device::cuda) {
    Tensor z = z0;
    for (int64_t j = 0; j < iters; ++j) {
      Tensor next;
#ifdef LRA_WITH_CUDA
      if (cuda::pinv_step_fits(a.dim(-1), a.dtype())) {
        PinvStep s{z, fresh(), fresh(), fresh()};
        next = fresh();
        cuda::pinv_step(a, z, s.p, s.u1, s.u2, next);
        r.steps.push_back(s);
        z = next;
        continue;
      }
#endif
      r.steps.push_back(composed_step(a, z, next));
      z = next;
    }
    r.z = z;
    return r;
  }
  if (iters == 0) {
    r.z = z0;
    return r;
  }
  for (int64_t j = 0; j < iters; ++j) r.steps.push_back({fresh(), fresh(), fresh(), fresh()});
  r.z = fresh();
  cpu::pinv_iterate(a, z0, r.steps, r.z);
  return r;
}

Tensor pinv_iterate_backward(const Tensor& a, const std::vector<PinvStep>& steps, const Tensor& d_z,
                             Tensor& d_a) {
  check_square("pinv_iterate_backward", a);
  check_same_shape(a, d_z, "pinv_iterate_backward");
  check_same_shape(a, d_a, "pinv_iterate_backward");
  check_same_dtype(a, d_z, "pinv_iterate_backward");
  check_same_dtype(a, d_a, "pinv_iterate_backward");
  for (const PinvStep& s : steps)
    for (const Tensor* t : {&s.z, &s.p, &s.u1, &s.u2}) {
      check_same_shape(a, *t, "pinv_iterate_backward (saved step)");
      check_same_dtype(a, *t, "pinv_iterate_backward (saved step)");
    }
  one_device("pinv_iterate_backward", {&a, &d_z, &d_a});
  if (a.device() == Device::cuda) {
    Tensor g = d_z;
    for (auto s = steps.rbegin(); s != steps.rend(); ++s) {
#ifdef LRA_WITH_CUDA
      if (cuda::pinv_step_fits(a.dim(-1), a.dtype())) {
        Tensor d_prev = Tensor::empty(a.shape(), a.dtype(), a.device());
        cuda::pinv_step_backward(a, *s, g, d_a, d_prev);
        g = d_prev;
        continue;
      }
#endif
      g = composed_step_backward(a, *s, g, d_a);
    }
    return steps.empty() ? d_z.clone() : g;  // never the caller's d_z itself, as on the CPU
  }
  if (steps.empty()) return d_z.clone();
  Tensor d_z0 = Tensor::empty(a.shape(), a.dtype(), a.device());
  cpu::pinv_iterate_backward(a, steps, d_z, d_a, d_z0);
  return d_z0;
}

Tensor crop2d(const Tensor& x, int64_t rows, int64_t cols) {
  check_rank(x, 2, 2, "crop2d");
  one_device("crop2d", {&x});
  LRA_CHECK(0 <= rows && rows <= x.dim(0) && 0 <= cols && cols <= x.dim(1),
            "crop2d: block {}x{} does not fit in {}", rows, cols, x.shape_str());
  Tensor y = Tensor::empty(Shape{rows, cols}, x.dtype(), x.device());
  LRA_ATTN_RUN(x.device(), crop2d, x, y);
  return y;
}

void crop2d_backward_add(Tensor& dx, const Tensor& dy) {
  check_rank(dx, 2, 2, "crop2d_backward_add");
  check_rank(dy, 2, 2, "crop2d_backward_add");
  check_same_dtype(dx, dy, "crop2d_backward_add");
  one_device("crop2d_backward_add", {&dx, &dy});
  LRA_CHECK(dy.dim(0) <= dx.dim(0) && dy.dim(1) <= dx.dim(1),
            "crop2d_backward_add: block {} does not fit in {}", dy.shape_str(), dx.shape_str());
  LRA_ATTN_RUN(dx.device(), crop2d_backward_add, dx, dy);
}

Tensor dropout_mask(const Shape& shape, double p, uint64_t seed, uint64_t offset, DType dtype,
                    Device device) {
  LRA_CHECK(p >= 0.0 && p < 1.0, "dropout_mask: probability {} not in [0, 1)", p);
  Tensor y = Tensor::empty(shape, dtype, device);
  LRA_ATTN_RUN(device, attn_dropout_mask, p, seed, offset, y);
  return y;
}

}  // namespace lra::core
