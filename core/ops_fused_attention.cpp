// Validation, output allocation and dispatch for core/ops_fused_attention.h.
#include "core/ops_fused_attention.h"

#include "core/cpu/fused_attention.h"
#include "core/op_checks.h"
#ifdef LRA_WITH_CUDA
#include "core/cuda/fused_attention.h"
#endif

namespace lra::core {
namespace {

void check_inputs(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                  const Tensor& key_mask, const AttentionDropout& dropout) {
  check_rank(q, 4, 4, op);
  check_same_shape(q, k, op);
  check_same_shape(q, v, op);
  check_same_dtype(q, k, op);
  check_same_dtype(q, v, op);
  check_key_mask(op, key_mask, q.dim(0), q.dim(2));
  LRA_CHECK(dropout.p >= 0.0 && dropout.p < 1.0, "{}: dropout {} not in [0, 1)", op, dropout.p);
  if (one_device(op, {&q, &k, &v, &key_mask}) == Device::cuda) {
#ifdef LRA_WITH_CUDA
    LRA_CHECK(q.dim(3) <= cuda::fused_attention_max_head_dim,
              "{}: the CUDA kernel takes head dims up to {}, got {} (use the composed softmax)",
              op, cuda::fused_attention_max_head_dim, q.dim(3));
#else
    fail_no_cuda(op);
#endif
  }
}

// The dtype of the log-sum-exp rows: f32 for bf16 inputs (bf16 is storage only).
DType lse_dtype(const Tensor& q) { return q.dtype() == DType::bf16 ? DType::f32 : q.dtype(); }

// The CPU takes bf16 as storage: inputs widened to f32 (exactly), the f32 kernel, results
// rounded once to bf16. The reference the CUDA bf16 kernels are held to.
Tensor widened(const Tensor& t) { return t.dtype() == DType::bf16 ? t.to(DType::f32) : t; }

}  // namespace

FusedAttention fused_softmax_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                       const Tensor& key_mask, double scale,
                                       const AttentionDropout& dropout) {
  check_inputs("fused_softmax_attention", q, k, v, key_mask, dropout);
  FusedAttention r;
  r.out = Tensor::empty(q.shape(), q.dtype(), q.device());
  r.lse = Tensor::empty(Shape{q.dim(0), q.dim(1), q.dim(2)}, lse_dtype(q), q.device());
#ifdef LRA_WITH_CUDA
  if (q.device() == Device::cuda) {
    cuda::fused_attention(q, k, v, key_mask, scale, dropout, r.out, r.lse);
    return r;
  }
#endif
  if (q.dtype() == DType::bf16) {
    Tensor out = Tensor::empty(q.shape(), DType::f32);
    cpu::fused_attention(widened(q), widened(k), widened(v), key_mask, scale, dropout, out, r.lse);
    r.out.copy_from(out);
    return r;
  }
  cpu::fused_attention(q, k, v, key_mask, scale, dropout, r.out, r.lse);
  return r;
}

FusedAttentionGrads fused_softmax_attention_backward(const Tensor& q, const Tensor& k,
                                                     const Tensor& v, const Tensor& key_mask,
                                                     double scale, const AttentionDropout& dropout,
                                                     const Tensor& lse, const Tensor& out,
                                                     const Tensor& d_out) {
  const char* op = "fused_softmax_attention_backward";
  check_inputs(op, q, k, v, key_mask, dropout);
  check_same_shape(q, d_out, op);
  check_same_dtype(q, d_out, op);
  LRA_CHECK(out.defined(), "{}: the forward's out is undefined", op);
  check_same_shape(q, out, op);
  check_same_dtype(q, out, op);
  one_device(op, {&q, &lse, &out, &d_out});
  LRA_CHECK(lse.defined() && lse.rank() == 3 && lse.dim(0) == q.dim(0) &&
                lse.dim(1) == q.dim(1) && lse.dim(2) == q.dim(2) && lse.dtype() == lse_dtype(q),
            "{}: lse {} does not match [batch, heads, seq] of q {}", op,
            lse.defined() ? lse.shape_str() : std::string("(undefined)"), q.shape_str());
  FusedAttentionGrads g;
  g.dq = Tensor::empty(q.shape(), q.dtype(), q.device());
  g.dk = Tensor::empty(q.shape(), q.dtype(), q.device());
  g.dv = Tensor::empty(q.shape(), q.dtype(), q.device());
#ifdef LRA_WITH_CUDA
  if (q.device() == Device::cuda) {
    cuda::fused_attention_backward(q, k, v, key_mask, scale, dropout, lse, out, d_out, g.dq, g.dk,
                                   g.dv);
    return g;
  }
#endif
  if (q.dtype() == DType::bf16) {
    FusedAttentionGrads wide;
    for (Tensor* t : {&wide.dq, &wide.dk, &wide.dv}) *t = Tensor::empty(q.shape(), DType::f32);
    cpu::fused_attention_backward(widened(q), widened(k), widened(v), key_mask, scale, dropout,
                                  lse, widened(out), widened(d_out), wide.dq, wide.dk, wide.dv);
    g.dq.copy_from(wide.dq);
    g.dk.copy_from(wide.dk);
    g.dv.copy_from(wide.dv);
    return g;
  }
  cpu::fused_attention_backward(q, k, v, key_mask, scale, dropout, lse, out, d_out, g.dq, g.dk,
                                g.dv);
  return g;
}

}  // namespace lra::core
