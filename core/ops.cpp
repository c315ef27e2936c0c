// Validation, output allocation and device dispatch for the ops of core/ops.h.
#include "core/ops.h"

#include <algorithm>

#include "core/cpu/kernels.h"
#include "core/cpu/matmul_softmax.h"
#include "core/cpu/thin_gemm.h"
#include "core/op_checks.h"
#ifdef LRA_WITH_CUDA
#include "core/cuda/kernels.h"
#include "core/cuda/matmul_softmax.h"
// Runs the kernel of the device the op's tensors live on.
#define LRA_RUN(device, fn, ...) \
  ((device) == Device::cuda ? cuda::fn(__VA_ARGS__) : cpu::fn(__VA_ARGS__))
#else
#define LRA_RUN(device, fn, ...) cpu::fn(__VA_ARGS__)
#endif

namespace lra::core {
namespace {

void require_same(const char* op, const Tensor& a, const Tensor& b) {
  check_same_shape(a, b, op);
  check_same_dtype(a, b, op);
}

int64_t batch_count(const Tensor& t) { return t.numel() / std::max<int64_t>(1, t.dim(-1) * t.dim(-2)); }

}  // namespace

// ---------------------------------------------------------------- GEMM
namespace {
// Sizes of c = op(a) op(b) for p batch indices, checked: m x k times k x n.
struct GemmDims {
  int64_t m, n, k, pa, pb, pc, p;
};
GemmDims check_gemm(const char* op, const Tensor& a, bool ta, const Tensor& b, bool tb,
                    const Tensor& c) {
  check_rank(a, 2, 4, op);
  check_rank(b, 2, 4, op);
  check_rank(c, 2, 4, op);
  check_same_dtype(a, b, op);
  check_same_dtype(a, c, op);
  one_device(op, {&a, &b, &c});
  GemmDims d{};
  d.m = ta ? a.dim(-1) : a.dim(-2);
  d.k = ta ? a.dim(-2) : a.dim(-1);
  int64_t kb = tb ? b.dim(-1) : b.dim(-2);
  d.n = tb ? b.dim(-2) : b.dim(-1);
  LRA_CHECK(d.k == kb, "{}: inner dimensions differ: op(a) of {} is {}x{}, op(b) of {} is {}x{}",
            op, a.shape_str(), d.m, d.k, b.shape_str(), kb, d.n);
  LRA_CHECK(c.dim(-2) == d.m && c.dim(-1) == d.n, "{}: output {} is not {}x{} (a {}, b {})", op,
            c.shape_str(), d.m, d.n, a.shape_str(), b.shape_str());
  d.pa = batch_count(a);
  d.pb = batch_count(b);
  d.pc = batch_count(c);
  d.p = std::max({d.pa, d.pb, d.pc});
  LRA_CHECK((d.pa == 1 || d.pa == d.p) && (d.pb == 1 || d.pb == d.p) && (d.pc == 1 || d.pc == d.p),
            "{}: batch counts differ: a {} ({}), b {} ({}), c {} ({})", op, a.shape_str(), d.pa,
            b.shape_str(), d.pb, c.shape_str(), d.pc);
  return d;
}

// The output of op(a) op(b): leading dims from the operand with the larger batch.
Tensor product_like(const Tensor& a, bool ta, const Tensor& b, bool tb) {
  check_rank(a, 2, 4, "matmul (a)");
  check_rank(b, 2, 4, "matmul (b)");
  const Tensor& lead = batch_count(b) > batch_count(a) ? b : a;
  std::vector<int64_t> dims = lead.shape().to_vector();
  dims[dims.size() - 2] = ta ? a.dim(-1) : a.dim(-2);
  dims[dims.size() - 1] = tb ? b.dim(-2) : b.dim(-1);
  return Tensor::empty(Shape(dims), a.dtype(), a.device());
}

// Which kernels run matmul_softmax and softmax_scores_backward: the one place that decides.
//   CPU:  the fused kernels (core/cpu/matmul_softmax.cpp) for products the thin GEMM kernel
//         suits.
//   CUDA: the fused kernels (core/cuda/matmul_softmax.cu) for rows of at most 256 scores
//         whose tiles fit the device's shared memory (Nyström's F and A, Linformer's
//         scores), any transposes and broadcast; longer rows (Nyström's B) compose.
//   Otherwise, or with an empty dimension: the GEMM(s) and the row softmax op composed.
enum class ScoresKernel { composed, fused };

ScoresKernel scores_forward_kernel(const Tensor& y, const GemmDims& d) {
  if (d.k == 0 || d.pc != d.p || y.numel() == 0) return ScoresKernel::composed;
  bool fused = false;
  if (y.device() == Device::cpu) fused = cpu::thin_gemm_suits(d.m, d.n, d.k);
#ifdef LRA_WITH_CUDA
  if (y.device() == Device::cuda) fused = cuda::matmul_softmax_fits(d.n, y.dtype());
#endif
  return fused ? ScoresKernel::fused : ScoresKernel::composed;
}

// y [.., r, c] = softmax(q kᵀ) with q [.., r, d], and dy = g hᵀ with g [.., r, e].
ScoresKernel scores_backward_kernel(const Tensor& y, int64_t r, int64_t c, int64_t d,
                                    int64_t e) {
  if (y.numel() == 0 || d == 0 || e == 0) return ScoresKernel::composed;
  bool fused = false;
  if (y.device() == Device::cpu)
    fused = cpu::thin_gemm_suits(r, c, e) && cpu::thin_gemm_suits(r, d, c) &&
            cpu::thin_gemm_suits(c, d, r);
#ifdef LRA_WITH_CUDA
  if (y.device() == Device::cuda) fused = cuda::softmax_scores_backward_fits(c, y.dtype());
#endif
  return fused ? ScoresKernel::fused : ScoresKernel::composed;
}
}  // namespace

void gemm(const Tensor& a, bool ta, const Tensor& b, bool tb, Tensor& c, double alpha,
          double beta) {
  GemmDims d = check_gemm("gemm", a, ta, b, tb, c);
  if (c.numel() == 0) return;
  if (d.k == 0) {
    LRA_RUN(c.device(), axpby, c, beta, Tensor(), 0.0);
    return;
  }
  LRA_RUN(a.device(), gemm, a, ta, b, tb, c, alpha, beta, d.m, d.n, d.k, d.pa, d.pb, d.pc);
}

Tensor matmul(const Tensor& a, const Tensor& b, bool ta, bool tb, double alpha) {
  Tensor c = product_like(a, ta, b, tb);
  gemm(a, ta, b, tb, c, alpha, 0.0);
  return c;
}

void matmul_backward(const Tensor& a, bool ta, const Tensor& b, bool tb, double alpha,
                     const Tensor& dc, Tensor* da, Tensor* db, bool accumulate) {
  double beta = accumulate ? 1.0 : 0.0;
  if (da) {
    LRA_CHECK(da->shape() == a.shape(), "matmul_backward: da {} does not match a {}",
              da->shape_str(), a.shape_str());
    // c = op(a) op(b): d op(a) = dc op(b)ᵀ; da = (d op(a))ᵀ when a is transposed.
    if (!ta) gemm(dc, false, b, !tb, *da, alpha, beta);
    else gemm(b, tb, dc, true, *da, alpha, beta);
  }
  if (db) {
    LRA_CHECK(db->shape() == b.shape(), "matmul_backward: db {} does not match b {}",
              db->shape_str(), b.shape_str());
    // d op(b) = op(a)ᵀ dc; db = (d op(b))ᵀ when b is transposed.
    if (!tb) gemm(a, !ta, dc, false, *db, alpha, beta);
    else gemm(dc, true, a, ta, *db, alpha, beta);
  }
}

// ---------------------------------------------------------------- softmax
Tensor softmax(const Tensor& x, const Tensor& key_mask, double scale) {
  check_rank(x, 1, 4, "softmax");
  one_device("softmax", {&x, &key_mask});
  if (key_mask.defined()) check_key_mask("softmax", key_mask, x.dim(0), x.dim(-1));
  LRA_CHECK(!key_mask.defined() || x.rank() >= 2, "softmax: a key mask needs x of rank >= 2");
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  LRA_RUN(x.device(), softmax, x, key_mask, scale, y);
  return y;
}

Tensor softmax_backward(const Tensor& y, const Tensor& dy, double scale) {
  require_same("softmax_backward", y, dy);
  one_device("softmax_backward", {&y, &dy});
  Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
  LRA_RUN(y.device(), softmax_backward, y, dy, scale, dx);
  return dx;
}

Tensor matmul_softmax(const Tensor& a, const Tensor& b, bool ta, bool tb, const Tensor& key_mask,
                      double scale) {
  Tensor y = product_like(a, ta, b, tb);
  GemmDims d = check_gemm("matmul_softmax", a, ta, b, tb, y);
  one_device("matmul_softmax", {&a, &key_mask});
  if (key_mask.defined()) check_key_mask("matmul_softmax", key_mask, y.dim(0), d.n);
  LRA_CHECK(!key_mask.defined() || y.rank() >= 3,
            "matmul_softmax: a key mask needs a batch dim (product {})", y.shape_str());
  if (scores_forward_kernel(y, d) == ScoresKernel::composed) {
    y = Tensor();  // released before the two ops allocate theirs: no extra peak bytes
    return softmax(matmul(a, b, ta, tb), key_mask, scale);
  }
  const cpu::ProductShape shape{d.m, d.n, d.k, d.p, d.pa, d.pb};
  LRA_RUN(y.device(), matmul_softmax, a, ta, b, tb, key_mask, scale, shape, y);
  return y;
}

ScoreGrads softmax_scores_backward(const Tensor& y, const Tensor& q, const Tensor& k,
                                   const Tensor& g, const Tensor& h, double scale) {
  const char* op = "softmax_scores_backward";
  for (const Tensor* t : {&y, &q, &k, &g, &h}) {
    LRA_CHECK(t->defined(), "{}: tensor is undefined", op);
    check_rank(*t, 2, 4, op);
    check_same_dtype(y, *t, op);
  }
  one_device(op, {&y, &q, &k, &g, &h});
  int64_t p = batch_count(y), r = y.dim(-2), c = y.dim(-1), d = q.dim(-1), e = g.dim(-1);
  LRA_CHECK(q.dim(-2) == r && k.dim(-2) == c && k.dim(-1) == d && g.dim(-2) == r &&
                h.dim(-2) == c && h.dim(-1) == e,
            "{}: shapes do not fit y = softmax(q kᵀ), dy = g hᵀ: y {}, q {}, k {}, g {}, h {}", op,
            y.shape_str(), q.shape_str(), k.shape_str(), g.shape_str(), h.shape_str());
  for (const Tensor* t : {&q, &k, &g, &h})
    LRA_CHECK(batch_count(*t) == p, "{}: batch counts differ: y {}, {}", op, y.shape_str(),
              t->shape_str());
  if (scores_backward_kernel(y, r, c, d, e) == ScoresKernel::composed) {
    Tensor ds = softmax_backward(y, matmul(g, h, false, true), scale);
    return {matmul(ds, k), matmul(ds, q, true, false)};
  }
  ScoreGrads r_grads{Tensor::empty(q.shape(), q.dtype(), q.device()),
                     Tensor::empty(k.shape(), k.dtype(), k.device())};
  LRA_RUN(y.device(), softmax_scores_backward, y, q, k, g, h, scale, r_grads.d_q, r_grads.d_k);
  return r_grads;
}

// ---------------------------------------------------------------- layer norm
LayerNormResult layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps) {
  check_rank(x, 1, 4, "layer_norm");
  one_device("layer_norm", {&x, &gamma, &beta});
  int64_t cols = x.dim(-1);
  LRA_CHECK(gamma.rank() == 1 && gamma.dim(0) == cols && beta.shape() == gamma.shape(),
            "layer_norm: gamma {} and beta {} must be [{}] for input {}", gamma.shape_str(),
            beta.shape_str(), cols, x.shape_str());
  check_same_dtype(x, gamma, "layer_norm");
  int64_t rows = cols ? x.numel() / cols : 0;
  LayerNormResult r{Tensor::empty(x.shape(), x.dtype(), x.device()),
                    Tensor::empty(Shape{rows}, x.dtype(), x.device()),
                    Tensor::empty(Shape{rows}, x.dtype(), x.device())};
  LRA_RUN(x.device(), layer_norm, x, gamma, beta, eps, r.y, r.mean, r.rstd);
  return r;
}

LayerNormGrads layer_norm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                   const Tensor& rstd, const Tensor& dy, const Tensor& residual) {
  require_same("layer_norm_backward", x, dy);
  if (residual.defined()) require_same("layer_norm_backward (residual)", x, residual);
  one_device("layer_norm_backward", {&x, &gamma, &mean, &rstd, &dy, &residual});
  LayerNormGrads g{Tensor::empty(x.shape(), x.dtype(), x.device()),
                   Tensor::empty(gamma.shape(), x.dtype(), x.device()),
                   Tensor::empty(gamma.shape(), x.dtype(), x.device())};
  LRA_RUN(x.device(), layer_norm_backward, x, gamma, mean, rstd, dy, residual, g.dx, g.dgamma,
          g.dbeta);
  return g;
}

// ---------------------------------------------------------------- activations
namespace {
Tensor unary_op(const char* name, cpu::Unary op, const Tensor& x) {
  LRA_CHECK(x.defined(), "{}: tensor is undefined", name);
  one_device(name, {&x});
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  LRA_RUN(x.device(), unary, op, x, y);
  return y;
}
Tensor unary_backward_op(const char* name, cpu::Unary op, const Tensor& x, const Tensor& dy) {
  require_same(name, x, dy);
  one_device(name, {&x, &dy});
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  LRA_RUN(x.device(), unary_backward, op, x, dy, dx);
  return dx;
}
Tensor binary_op(const char* name, cpu::Binary op, const Tensor& a, const Tensor& b) {
  require_same(name, a, b);
  one_device(name, {&a, &b});
  Tensor y = Tensor::empty(a.shape(), a.dtype(), a.device());
  LRA_RUN(a.device(), binary, op, a, b, y);
  return y;
}
}  // namespace

Tensor gelu(const Tensor& x) { return unary_op("gelu", cpu::Unary::gelu, x); }
Tensor gelu_backward(const Tensor& x, const Tensor& dy) {
  return unary_backward_op("gelu_backward", cpu::Unary::gelu, x, dy);
}
Tensor relu(const Tensor& x) { return unary_op("relu", cpu::Unary::relu, x); }
Tensor relu_backward(const Tensor& x, const Tensor& dy) {
  return unary_backward_op("relu_backward", cpu::Unary::relu, x, dy);
}

// ---------------------------------------------------------------- elementwise
Tensor add(const Tensor& a, const Tensor& b) { return binary_op("add", cpu::Binary::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary_op("sub", cpu::Binary::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary_op("mul", cpu::Binary::mul, a, b); }

MulGrads mul_backward(const Tensor& a, const Tensor& b, const Tensor& dy) {
  require_same("mul_backward", a, dy);
  return {mul(dy, b), mul(dy, a)};
}

Tensor scale(const Tensor& x, double alpha) {
  LRA_CHECK(x.defined(), "scale: tensor is undefined");
  one_device("scale", {&x});
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  LRA_RUN(y.device(), axpby, y, 0.0, x, alpha);
  return y;
}

void add_into(Tensor& y, const Tensor& x, double alpha) {
  require_same("add_into", y, x);
  one_device("add_into", {&y, &x});
  LRA_RUN(y.device(), axpby, y, 1.0, x, alpha);
}

Tensor add_bias(const Tensor& x, const Tensor& bias) {
  check_rank(x, 1, 4, "add_bias");
  LRA_CHECK(bias.rank() == 1 && bias.dim(0) == x.dim(-1),
            "add_bias: bias {} does not match the last dim of {}", bias.shape_str(), x.shape_str());
  check_same_dtype(x, bias, "add_bias");
  one_device("add_bias", {&x, &bias});
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  LRA_RUN(x.device(), add_bias, x, bias, y);
  return y;
}

Tensor scale_rows(const Tensor& x, const Tensor& s) {
  LRA_CHECK(x.defined() && s.defined(), "scale_rows: tensor is undefined");
  LRA_CHECK(s.numel() > 0 && x.numel() % s.numel() == 0,
            "scale_rows: {} row scales do not divide x of shape {}", s.numel(), x.shape_str());
  check_same_dtype(x, s, "scale_rows");
  one_device("scale_rows", {&x, &s});
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  LRA_RUN(x.device(), scale_rows, x, s, y);
  return y;
}

ScaleRowsGrads scale_rows_backward(const Tensor& x, const Tensor& s, const Tensor& dy) {
  require_same("scale_rows_backward", x, dy);
  ScaleRowsGrads g{scale_rows(dy, s), Tensor::empty(s.shape(), s.dtype(), s.device())};
  LRA_RUN(x.device(), row_dot, x, dy, g.ds);
  return g;
}

// ---------------------------------------------------------------- reductions
double sum_all(const Tensor& x) {
  LRA_CHECK(x.defined(), "sum_all: tensor is undefined");
  one_device("sum_all", {&x});
  return LRA_RUN(x.device(), sum_all, x);
}

double mean_all(const Tensor& x) {
  LRA_CHECK(x.numel() > 0, "mean_all: tensor of shape {} is empty", x.shape_str());
  return sum_all(x) / static_cast<double>(x.numel());
}

namespace {
Shape without_last(const Shape& s) {
  std::vector<int64_t> d = s.to_vector();
  d.pop_back();
  if (d.empty()) d.push_back(1);
  return Shape(d);
}
Tensor row_reduce(const char* name, const Tensor& x, bool mean) {
  check_rank(x, 1, 4, name);
  one_device(name, {&x});
  Tensor y = Tensor::empty(without_last(x.shape()), x.dtype(), x.device());
  double alpha = mean ? 1.0 / static_cast<double>(std::max<int64_t>(1, x.dim(-1))) : 1.0;
  LRA_RUN(x.device(), sum_rows, x, alpha, y);
  return y;
}
Tensor row_reduce_backward(const char* name, const Tensor& dy, const Shape& like, bool mean) {
  LRA_CHECK(like.rank() >= 1 && dy.numel() * like[like.rank() - 1] == like.numel(),
            "{}: gradient {} does not match input shape {}", name, dy.shape_str(), like.str());
  one_device(name, {&dy});
  Tensor dx = Tensor::empty(like, dy.dtype(), dy.device());
  double cols = static_cast<double>(like[like.rank() - 1]);
  LRA_RUN(dy.device(), broadcast_rows, dy, mean ? 1.0 / std::max(1.0, cols) : 1.0, dx);
  return dx;
}
}  // namespace

Tensor sum_rows(const Tensor& x) { return row_reduce("sum_rows", x, false); }
Tensor mean_rows(const Tensor& x) { return row_reduce("mean_rows", x, true); }
Tensor sum_rows_backward(const Tensor& dy, const Shape& like) {
  return row_reduce_backward("sum_rows_backward", dy, like, false);
}
Tensor mean_rows_backward(const Tensor& dy, const Shape& like) {
  return row_reduce_backward("mean_rows_backward", dy, like, true);
}

Tensor sum_leading(const Tensor& x) {
  check_rank(x, 1, 4, "sum_leading");
  one_device("sum_leading", {&x});
  Tensor y = Tensor::empty(Shape{x.dim(-1)}, x.dtype(), x.device());
  LRA_RUN(x.device(), sum_leading, x, y);
  return y;
}

// ---------------------------------------------------------------- layout
Tensor transpose12(const Tensor& x) {
  check_rank(x, 4, 4, "transpose12");
  one_device("transpose12", {&x});
  Tensor y = Tensor::empty(Shape{x.dim(0), x.dim(2), x.dim(1), x.dim(3)}, x.dtype(), x.device());
  LRA_RUN(x.device(), transpose12, x, y);
  return y;
}

// ---------------------------------------------------------------- segment means
SegmentMeans segment_means(const Tensor& x, int64_t m, const Tensor& key_mask) {
  check_rank(x, 3, 4, "segment_means");
  one_device("segment_means", {&x, &key_mask});
  LRA_CHECK(m >= 1, "segment_means: number of segments must be >= 1, got {}", m);
  int64_t seq = x.dim(-2);
  check_key_mask("segment_means", key_mask, x.dim(0), seq);
  std::vector<int64_t> dims = x.shape().to_vector();
  dims[dims.size() - 2] = m;
  SegmentMeans r{Tensor::empty(Shape(dims), x.dtype(), x.device()),
                 Tensor::empty(Shape{x.dim(0), m}, x.dtype(), x.device())};
  LRA_RUN(x.device(), segment_means, x, m, key_mask, r.means, r.counts);
  return r;
}

void segment_means_backward_add(Tensor& dx, const Tensor& d_means, const Tensor& key_mask) {
  check_rank(d_means, 3, 4, "segment_means_backward_add");
  check_same_dtype(dx, d_means, "segment_means_backward_add");
  one_device("segment_means_backward_add", {&dx, &d_means, &key_mask});
  const Shape& x_shape = dx.shape();
  LRA_CHECK(x_shape.rank() == d_means.rank() && x_shape[0] == d_means.dim(0) &&
                x_shape[x_shape.rank() - 1] == d_means.dim(-1) &&
                (x_shape.rank() == 3 || x_shape[1] == d_means.dim(1)),
            "segment_means_backward_add: gradient {} does not match input shape {}",
            d_means.shape_str(), x_shape.str());
  check_key_mask("segment_means_backward_add", key_mask, x_shape[0], x_shape[x_shape.rank() - 2]);
  LRA_RUN(d_means.device(), segment_means_backward_add, dx, d_means, key_mask);
}

// ---------------------------------------------------------------- depthwise conv
namespace {
void check_conv(const char* op, const Tensor& x, const Tensor& w, const Tensor& key_mask) {
  check_rank(x, 4, 4, op);
  check_key_mask(op, key_mask, x.dim(0), x.dim(2));
  check_rank(w, 2, 2, op);
  check_same_dtype(x, w, op);
  LRA_CHECK(w.dim(0) == x.dim(1), "{}: filter {} needs one row per head of input {}", op,
            w.shape_str(), x.shape_str());
  LRA_CHECK(w.dim(1) % 2 == 1, "{}: kernel width {} must be odd (same-length output)", op,
            w.dim(1));
}
}  // namespace

Tensor depthwise_conv_seq(const Tensor& x, const Tensor& w, const Tensor& key_mask) {
  check_conv("depthwise_conv_seq", x, w, key_mask);
  one_device("depthwise_conv_seq", {&x, &w, &key_mask});
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  LRA_RUN(x.device(), depthwise_conv_seq, x, w, key_mask, false, y);
  return y;
}

void depthwise_conv_seq_add(Tensor& y, const Tensor& x, const Tensor& w, const Tensor& key_mask) {
  check_conv("depthwise_conv_seq_add", x, w, key_mask);
  require_same("depthwise_conv_seq_add", x, y);
  one_device("depthwise_conv_seq_add", {&y, &x, &w, &key_mask});
  LRA_RUN(x.device(), depthwise_conv_seq, x, w, key_mask, true, y);
}

ConvGrads depthwise_conv_seq_backward(const Tensor& x, const Tensor& w, const Tensor& dy,
                                      const Tensor& key_mask) {
  check_conv("depthwise_conv_seq_backward", x, w, key_mask);
  require_same("depthwise_conv_seq_backward", x, dy);
  one_device("depthwise_conv_seq_backward", {&x, &w, &dy, &key_mask});
  ConvGrads g{Tensor::empty(x.shape(), x.dtype(), x.device()),
              Tensor::empty(w.shape(), w.dtype(), w.device())};
  LRA_RUN(x.device(), depthwise_conv_seq_backward, x, w, dy, key_mask, false, g.dx, g.dw);
  return g;
}

void depthwise_conv_seq_backward_add(Tensor& dx, Tensor& dw, const Tensor& x, const Tensor& w,
                                     const Tensor& dy, const Tensor& key_mask) {
  check_conv("depthwise_conv_seq_backward_add", x, w, key_mask);
  require_same("depthwise_conv_seq_backward_add", x, dy);
  require_same("depthwise_conv_seq_backward_add", x, dx);
  require_same("depthwise_conv_seq_backward_add", w, dw);
  one_device("depthwise_conv_seq_backward_add", {&dx, &dw, &x, &w, &dy, &key_mask});
  LRA_RUN(x.device(), depthwise_conv_seq_backward, x, w, dy, key_mask, true, dx, dw);
}

}  // namespace lra::core
