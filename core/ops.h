#pragma once
// Primitive ops: free functions on Tensors, each forward with its backward beside it.
// They validate shapes/dtypes once here and dispatch on the device (core/cpu, later
// core/cuda). All ops accept f32 and f64; inputs of one op share a dtype.
//
// Conventions: "rows" means the tensor viewed as [R, C] with C = last dimension.
// Key masks are [B, N] tensors (1 = token, 0 = padding) of any float dtype, where B is
// the tensor's dimension 0 and N its last dimension (or its sequence dimension).
#include <cstdint>

#include "core/tensor.h"

namespace lra::core {

// ---------------------------------------------------------------- batched GEMM
// c[p] = alpha * op(a[p]) * op(b[p]) + beta * c[p] for every batch index p, where
// op(x) = x or xᵀ of the last two dims and the batch is every leading dim flattened.
// a or b may have batch count 1 (broadcast). c may have batch count 1 while the
// operands have P > 1: then c accumulates the sum over p (used for weight gradients).
void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
          double alpha = 1.0, double beta = 0.0);
// Returns alpha * op(a) * op(b); the leading dims come from the operand with the
// larger batch (a on a tie).
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false,
              double alpha = 1.0);
// Gradients of c = alpha * op(a) * op(b) given dc. Each requested gradient (non-null)
// is written, or added to when accumulate is true. A broadcast operand gets the sum.
void matmul_backward(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, double alpha,
                     const Tensor& dc, Tensor* da, Tensor* db, bool accumulate = false);

// ---------------------------------------------------------------- softmax
// y = softmax(scale * x) along the last dim. With a key mask [B, N] (B = x.dim(0),
// N = x.dim(-1)) masked entries get exactly 0 weight; a row with no unmasked entry is 0.
Tensor softmax(const Tensor& x, const Tensor& key_mask = {}, double scale = 1.0);
// dx = scale * y * (dy - sum(dy * y)) row-wise.
Tensor softmax_backward(const Tensor& y, const Tensor& dy, double scale = 1.0);
// softmax(matmul(a, b, trans_a, trans_b), key_mask, scale), the mask over the product's
// leading dim. On the CPU each matrix of scores is made and normalised while in cache
// (core/cpu/matmul_softmax.cpp) instead of going to memory whole and back: the same
// values, one pass over memory fewer. On CUDA rows of at most 256 scores are made and
// normalised in registers by one kernel (core/cuda/matmul_softmax.cu; its products in FP32
// also under TF32 precision); longer rows are those two ops (the rule: core/ops.cpp).
Tensor matmul_softmax(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
                      const Tensor& key_mask = {}, double scale = 1.0);
// Backward of attention scores: y = softmax(scale * q kᵀ) (q [..., r, d] and k [..., c, d]
// matched row against row) and dy = g hᵀ (g [..., r, e], h [..., c, e]; dy = d_out vᵀ
// when y multiplies v). Returns dq = dS k and dk = dSᵀ q, with dS = softmax_backward(y,
// g hᵀ, scale) the gradient w.r.t. q kᵀ. On the CPU dS is made, used and dropped one matrix
// at a time in cache (core/cpu/matmul_softmax.cpp): the same values as those four ops,
// without dy or dS ever in memory whole. On CUDA, for rows of at most 256 scores, one
// kernel makes dS and dq per tile of rows, and dk comes from per-tile partials summed in
// order or from dS and one GEMM (core/cuda/matmul_softmax.cu); longer rows are the four
// ops. All five tensors have the same batch count.
struct ScoreGrads {
  Tensor d_q, d_k;
};
ScoreGrads softmax_scores_backward(const Tensor& y, const Tensor& q, const Tensor& k,
                                   const Tensor& g, const Tensor& h, double scale = 1.0);

// ---------------------------------------------------------------- layer norm
struct LayerNormResult {
  Tensor y, mean, rstd;  // mean/rstd: one per row
};
struct LayerNormGrads {
  Tensor dx, dgamma, dbeta;
};
// Normalises each row of x ([..., C]) then applies gamma, beta ([C]).
LayerNormResult layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                           double eps = 1e-5);
// residual (x's shape; optional) is added into dx: the gradient that reaches x around the
// LayerNorm through a residual connection, summed in the same pass.
LayerNormGrads layer_norm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                   const Tensor& rstd, const Tensor& dy,
                                   const Tensor& residual = Tensor());

// ---------------------------------------------------------------- activations
Tensor gelu(const Tensor& x);  // exact: 0.5 x (1 + erf(x / sqrt 2))
Tensor gelu_backward(const Tensor& x, const Tensor& dy);
Tensor relu(const Tensor& x);
Tensor relu_backward(const Tensor& x, const Tensor& dy);

// ---------------------------------------------------------------- elementwise
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
struct MulGrads {
  Tensor da, db;
};
MulGrads mul_backward(const Tensor& a, const Tensor& b, const Tensor& dy);
Tensor scale(const Tensor& x, double alpha);
// y += alpha * x (same shape).
void add_into(Tensor& y, const Tensor& x, double alpha = 1.0);
// x ([..., C]) + bias ([C]) on every row; the bias gradient is sum_leading(dy).
Tensor add_bias(const Tensor& x, const Tensor& bias);
// Row r of x ([R, C] view) times s[r] (s has R elements).
Tensor scale_rows(const Tensor& x, const Tensor& s);
struct ScaleRowsGrads {
  Tensor dx, ds;
};
ScaleRowsGrads scale_rows_backward(const Tensor& x, const Tensor& s, const Tensor& dy);

// ---------------------------------------------------------------- reductions
double sum_all(const Tensor& x);   // in double, deterministic order
double mean_all(const Tensor& x);
// Sum over the last dim: [..., C] -> [...] (rank-1 input gives shape [1]).
Tensor sum_rows(const Tensor& x);
Tensor mean_rows(const Tensor& x);
// Backward of sum_rows / mean_rows: dx[r, c] = dy[r] (/ C), shaped like `like`.
Tensor sum_rows_backward(const Tensor& dy, const Shape& like);
Tensor mean_rows_backward(const Tensor& dy, const Shape& like);
// Sum over every leading dim: [..., C] -> [C].
Tensor sum_leading(const Tensor& x);

// ---------------------------------------------------------------- layout
// Swaps dims 1 and 2 of a rank-4 tensor: [A, B, C, D] -> [A, C, B, D] (self-inverse,
// so it is its own backward). Used for [B, N, H, D] <-> [B, H, N, D].
Tensor transpose12(const Tensor& x);

// ---------------------------------------------------------------- segment means
struct SegmentMeans {
  Tensor means;   // [B, H, m, D] (or [B, m, D] for rank-3 input)
  Tensor counts;  // [B, m]: tokens averaged in each segment (0 = empty segment)
};
// Splits each sequence of x ([B, H, N, D] or [B, N, D]) into m contiguous segments and
// averages each. Without a mask the N positions are split; with a key mask [B, N] the
// real tokens of each sequence are split and padding is ignored. n tokens go to m
// segments as: the first m - n % m segments get n / m tokens, the rest one more.
// m > n leaves the first m - n segments empty (mean 0, count 0).
SegmentMeans segment_means(const Tensor& x, int64_t m, const Tensor& key_mask = {});
// Adds the gradient w.r.t. x of segment_means (given d_means) into dx, x's shape: the
// callers add it to another gradient of x, so no separate tensor is written and re-read.
// Padded positions are left as they are.
void segment_means_backward_add(Tensor& dx, const Tensor& d_means, const Tensor& key_mask = {});

// ---------------------------------------------------------------- depthwise conv
// y[b, h, n, :] = sum_j w[h, j] * x'[b, h, n + j - K/2, :], zero padding outside [0, N);
// x: [B, H, N, D], w: [H, K] with K odd (the sequence is the conv axis, one filter per head).
// x' is x with the rows of padded positions (key_mask [B, N], 0 = padding) read as 0, as
// if x had gone through mask_seq first (without that copy).
Tensor depthwise_conv_seq(const Tensor& x, const Tensor& w, const Tensor& key_mask = {});
// y += the same conv: for callers adding it to another term (no separate tensor).
void depthwise_conv_seq_add(Tensor& y, const Tensor& x, const Tensor& w,
                            const Tensor& key_mask = {});
struct ConvGrads {
  Tensor dx, dw;
};
// Gradients w.r.t. x (0 at padded rows) and w, given dy.
ConvGrads depthwise_conv_seq_backward(const Tensor& x, const Tensor& w, const Tensor& dy,
                                      const Tensor& key_mask = {});
// dx += the gradient w.r.t. x, dw += the gradient w.r.t. w.
void depthwise_conv_seq_backward_add(Tensor& dx, Tensor& dw, const Tensor& x, const Tensor& w,
                                     const Tensor& dy, const Tensor& key_mask = {});

}  // namespace lra::core
