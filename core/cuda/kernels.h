#pragma once
// CUDA kernels behind core/ops.h, with the same signatures and semantics as
// core/cpu/kernels.h (inputs validated and outputs allocated by the dispatching op).
// Results are deterministic: no atomics in reductions, fixed reduction trees.
#include "core/cpu/kernels.h"
#include "core/tensor.h"

namespace lra::core::cuda {

using cpu::Binary;
using cpu::Unary;

void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, double alpha,
          double beta, int64_t m, int64_t n, int64_t k, int64_t pa, int64_t pb, int64_t pc);

void softmax(const Tensor& x, const Tensor& key_mask, double scale, Tensor& y);
void softmax_backward(const Tensor& y, const Tensor& dy, double scale, Tensor& dx);

void layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, Tensor& y,
                Tensor& mean, Tensor& rstd);
void layer_norm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean,
                         const Tensor& rstd, const Tensor& dy, const Tensor& residual, Tensor& dx,
                         Tensor& dgamma, Tensor& dbeta);

void unary(Unary op, const Tensor& x, Tensor& y);
void unary_backward(Unary op, const Tensor& x, const Tensor& dy, Tensor& dx);
void binary(Binary op, const Tensor& a, const Tensor& b, Tensor& y);
void axpby(Tensor& y, double beta, const Tensor& x, double alpha);
void add_bias(const Tensor& x, const Tensor& bias, Tensor& y);
void scale_rows(const Tensor& x, const Tensor& s, Tensor& y);
void row_dot(const Tensor& a, const Tensor& b, Tensor& out);

double sum_all(const Tensor& x);
void sum_rows(const Tensor& x, double alpha, Tensor& y);
void broadcast_rows(const Tensor& v, double alpha, Tensor& y);
void sum_leading(const Tensor& x, Tensor& y);

void transpose12(const Tensor& x, Tensor& y);

void segment_means(const Tensor& x, int64_t m, const Tensor& key_mask, Tensor& means,
                   Tensor& counts);
void segment_means_backward_add(Tensor& dx, const Tensor& d_means, const Tensor& key_mask);

void depthwise_conv_seq(const Tensor& x, const Tensor& w, const Tensor& key_mask, bool accumulate,
                        Tensor& y);
void depthwise_conv_seq_backward(const Tensor& x, const Tensor& w, const Tensor& dy,
                                 const Tensor& key_mask, bool accumulate, Tensor& dx, Tensor& dw);

// count[b] = the real tokens of sequence b of key_mask ([batch, seq], or all when undefined)
// and, unless positions is null, positions[b * seq + i] = the i-th of them (device buffers).
void list_real_positions(const Tensor& key_mask, int64_t batch, int64_t seq, int* positions,
                         int* count);

// Tensor plumbing on the device.
void fill(Tensor& t, double value);
void convert(const Tensor& src, Tensor& dst);  // same shape, any two of f32, f64, bf16
void fill_uniform(Tensor& t, uint64_t seed, uint64_t offset, double lo, double hi);
void fill_normal(Tensor& t, uint64_t seed, uint64_t offset, double mean, double stddev);

}  // namespace lra::core::cuda
