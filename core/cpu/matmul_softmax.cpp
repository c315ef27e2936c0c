// softmax(op(A) op(B)) and its backward with the product made one matrix at a time: a
// thread computes one matrix's scores (N x m = 512 KiB at N = 2000, m = 64: L2-resident),
// then normalises (or differentiates) its rows while they are in cache. As a GEMM and a
// separate softmax the scores went out to memory whole and came back (at B = 32, H = 2
// two 32 MiB passes per product). Rows go through the softmax op's own row functions and
// the product through the same register-tiled kernel, so the values are the same.
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

void matmul_softmax_backward(const Tensor& y, const Tensor& a, bool ta, const Tensor& b, bool tb,
                             double scale, const ProductShape& s, Tensor& dx) {
  LRA_DISPATCH_FLOAT(y.dtype(), T, [&] {
    T* dp = dx.data<T>();
    const T sc = static_cast<T>(scale);
    parallel_for(s.p, 1, [&](int64_t begin, int64_t end) {
      ThinPanel<T> panel;
      // One matrix of dy at a time, from lra's allocator (counted, 64-byte aligned like a
      // tensor's rows, so Eigen's row sums match the unfused op's).
      Tensor scratch = Tensor::empty(Shape{s.m, s.n}, y.dtype());
      T* g = scratch.data<T>();
      for (int64_t i = begin; i < end; ++i) {
        if (i == begin || s.pb > 1) thin_prepare_panel(matrix<T>(b, s.pb, i, s.k * s.n), tb, s.m, s.k, s.n, panel);
        thin_gemm_rows(matrix<T>(a, s.pa, i, s.m * s.k), ta, panel, g, s.m, s.n, s.k, 0, s.m, T(1), T(0));
        const T* yi = y.data<T>() + i * s.m * s.n;
        T* di = dp + i * s.m * s.n;
        for (int64_t r = 0; r < s.m; ++r)
          softmax_backward_row(yi + r * s.n, g + r * s.n, di + r * s.n, s.n, sc);
      }
    });
  });
}

}  // namespace lra::core::cpu
