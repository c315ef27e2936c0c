#pragma once
// CPU kernels behind core/ops.h. Inputs are validated and outputs allocated by the
// dispatching op; these only compute. Every kernel is deterministic for any thread count.
#include "core/tensor.h"

namespace lra::core::cpu {

// c[p] = alpha op(a[p]) op(b[p]) + beta c[p]; batch counts pa, pb, pc in {1, P}.
void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, double alpha,
          double beta, int64_t m, int64_t n, int64_t k, int64_t pa, int64_t pb, int64_t pc);

void softmax(const Tensor& x, const Tensor& key_mask, double scale, Tensor& y);
void softmax_backward(const Tensor& y, const Tensor& dy, double scale, Tensor& dx);

void layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, Tensor& y,
                Tensor& mean, Tensor& rstd);
void layer_norm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean,
                         const Tensor& rstd, const Tensor& dy, const Tensor& residual, Tensor& dx,
                         Tensor& dgamma, Tensor& dbeta);

enum class Unary { gelu, relu };
void unary(Unary op, const Tensor& x, Tensor& y);
void unary_backward(Unary op, const Tensor& x, const Tensor& dy, Tensor& dx);

enum class Binary { add, sub, mul };
void binary(Binary op, const Tensor& a, const Tensor& b, Tensor& y);
void axpby(Tensor& y, double beta, const Tensor& x, double alpha);  // y = beta y + alpha x
void add_bias(const Tensor& x, const Tensor& bias, Tensor& y);
void scale_rows(const Tensor& x, const Tensor& s, Tensor& y);
void row_dot(const Tensor& a, const Tensor& b, Tensor& out);  // out[r] = sum_c a[r,c] b[r,c]

double sum_all(const Tensor& x);
void sum_rows(const Tensor& x, double alpha, Tensor& y);
void broadcast_rows(const Tensor& v, double alpha, Tensor& y);  // y[r, c] = alpha v[r]
void sum_leading(const Tensor& x, Tensor& y);

void transpose12(const Tensor& x, Tensor& y);

void segment_means(const Tensor& x, int64_t m, const Tensor& key_mask, Tensor& means,
                   Tensor& counts);
void segment_means_backward_add(Tensor& dx, const Tensor& d_means, const Tensor& key_mask);

void depthwise_conv_seq(const Tensor& x, const Tensor& w, const Tensor& key_mask, bool accumulate,
                        Tensor& y);
void depthwise_conv_seq_backward(const Tensor& x, const Tensor& w, const Tensor& dy,
                                 const Tensor& key_mask, bool accumulate, Tensor& dx, Tensor& dw);

}  // namespace lra::core::cpu
