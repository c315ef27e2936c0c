// softmax(op(A) op(B)) and the backward of attention scores, one matrix at a time: a
// thread computes one matrix's scores (N x m = 512 KiB at N = 2000, m = 64: L2-resident),
// then normalises its rows while they are in cache; backward, it makes dy = g hᵀ, turns
// it into dS in place and multiplies dS into dq and dk before moving on. As separate GEMMs
// and softmaxes each of those N x m matrices went out to memory whole and came back (at
// B = 32, H = 2, 32 MiB each). Rows go through the softmax op's own row functions and
// products through the same register-tiled kernel, so the values are the same.
#include "core/cpu/matmul_softmax.h"

#include "core/cpu/softmax_rows.h"
#include "core/cpu/thin_gemm.h"
#include "core/dispatch.h"
#include "core/parallel.h"

namespace lra::core::cpu {
namespace {

template <typename T> const T* matrix(const Tensor& t, int64_t batch_count, int64_t i, int64_t size) {
  return t.data<T>() + (batch_count == 1 ? 0 : i * size);
}

}  // namespace

void matmul_softmax(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& key_mask,
                    double scale, const ProductShape& s, Tensor& y) {
  KeyMaskBytes mask(key_mask, s.n);
  int64_t rows_per_batch = s.p * s.m / mask.batches;
  LRA_DISPATCH_FLOAT(y.dtype(), T, [&] {
    T* yp = y.data<T>();
    const T sc = static_cast<T>(scale);
    parallel_for(s.p, 1, [&](int64_t begin, int64_t end) {
      ThinPanel<T> panel;
      for (int64_t i = begin; i < end; ++i) {
        if (i == begin || s.pb > 1) thin_prepare_panel(matrix<T>(b, s.pb, i, s.k * s.n), tb, s.m, s.k, s.n, panel);
        T* yi = yp + i * s.m * s.n;
        thin_gemm_rows(matrix<T>(a, s.pa, i, s.m * s.k), ta, panel, yi, s.m, s.n, s.k, 0, s.m, T(1), T(0));
        for (int64_t r = 0; r < s.m; ++r)  // in place: the row function reads x before y
          softmax_row(yi + r * s.n, yi + r * s.n, s.n, mask.of((i * s.m + r) / rows_per_batch), sc);
      }
    });
  });
}

void softmax_scores_backward(const Tensor& y, const Tensor& q, const Tensor& k, const Tensor& g,
                             const Tensor& h, double scale, Tensor& d_q, Tensor& d_k) {
  int64_t r = y.dim(-2), c = y.dim(-1), d = q.dim(-1), e = g.dim(-1);
  int64_t p = r * c > 0 ? y.numel() / (r * c) : 0;
  LRA_DISPATCH_FLOAT(y.dtype(), T, [&] {
    const T sc = static_cast<T>(scale);
    parallel_for(p, 1, [&](int64_t begin, int64_t end) {
      ThinPanel<T> panel;
      // dS of one matrix, from lra's allocator (counted; 64-byte aligned like a tensor's
      // rows, so Eigen's row sums match the unfused ops').
      Tensor scratch = Tensor::empty(Shape{r, c}, y.dtype());
      T* ds = scratch.data<T>();
      for (int64_t i = begin; i < end; ++i) {
        const T* qi = q.data<T>() + i * r * d;
        const T* ki = k.data<T>() + i * c * d;
        const T* yi = y.data<T>() + i * r * c;
        // dy = g hᵀ, then dS in place row by row (the row function reads dy before writing).
        thin_prepare_panel(h.data<T>() + i * c * e, true, r, e, c, panel);
        thin_gemm_rows(g.data<T>() + i * r * e, false, panel, ds, r, c, e, 0, r, T(1), T(0));
        for (int64_t row = 0; row < r; ++row)
          softmax_backward_row(yi + row * c, ds + row * c, ds + row * c, c, sc);
        thin_prepare_panel(ki, false, r, c, d, panel);  // dq = dS k
        thin_gemm_rows(ds, false, panel, d_q.data<T>() + i * r * d, r, d, c, 0, r, T(1), T(0));
        thin_prepare_panel(qi, false, c, r, d, panel);  // dk = dSᵀ q
        thin_gemm_rows(ds, true, panel, d_k.data<T>() + i * c * d, c, d, r, 0, c, T(1), T(0));
      }
    });
  });
}

}  // namespace lra::core::cpu
