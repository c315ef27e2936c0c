// Elementwise kernels, reductions and layout changes.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/cpu/gelu.h"
#include "core/cpu/kernels.h"
#include "core/dispatch.h"
#include "core/parallel.h"

namespace lra::core::cpu {
namespace {

constexpr int64_t elem_grain = 1 << 15;

}  // namespace

void unary(Unary op, const Tensor& x, Tensor& y) {
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    parallel_for(x.numel(), elem_grain, [&](int64_t b, int64_t e) {
      if (op == Unary::gelu)
        for (int64_t i = b; i < e; ++i) yp[i] = gelu_value(xp[i]);
      else
        for (int64_t i = b; i < e; ++i) yp[i] = xp[i] > T(0) ? xp[i] : T(0);
    });
  });
}

void unary_backward(Unary op, const Tensor& x, const Tensor& dy, Tensor& dx) {
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    const T* gp = dy.data<T>();
    T* dp = dx.data<T>();
    parallel_for(x.numel(), elem_grain, [&](int64_t b, int64_t e) {
      if (op == Unary::gelu)
        for (int64_t i = b; i < e; ++i) dp[i] = gp[i] * gelu_slope(xp[i]);
      else
        for (int64_t i = b; i < e; ++i) dp[i] = xp[i] > T(0) ? gp[i] : T(0);
    });
  });
}

void binary(Binary op, const Tensor& a, const Tensor& b, Tensor& y) {
  LRA_DISPATCH_FLOAT(a.dtype(), T, [&] {
    const T* ap = a.data<T>();
    const T* bp = b.data<T>();
    T* yp = y.data<T>();
    parallel_for(a.numel(), elem_grain, [&](int64_t s, int64_t e) {
      switch (op) {
        case Binary::add: for (int64_t i = s; i < e; ++i) yp[i] = ap[i] + bp[i]; break;
        case Binary::sub: for (int64_t i = s; i < e; ++i) yp[i] = ap[i] - bp[i]; break;
        case Binary::mul: for (int64_t i = s; i < e; ++i) yp[i] = ap[i] * bp[i]; break;
      }
    });
  });
}

void axpby(Tensor& y, double beta, const Tensor& x, double alpha) {
  LRA_DISPATCH_FLOAT(y.dtype(), T, [&] {
    T* yp = y.data<T>();
    const T* xp = x.defined() ? x.data<T>() : nullptr;
    const T a = static_cast<T>(alpha), bt = static_cast<T>(beta);
    parallel_for(y.numel(), elem_grain, [&](int64_t s, int64_t e) {
      if (!xp)  // beta = 0 writes zeros without reading y (which may hold anything)
        for (int64_t i = s; i < e; ++i) yp[i] = beta == 0.0 ? T(0) : bt * yp[i];
      else if (beta == 1.0)
        for (int64_t i = s; i < e; ++i) yp[i] += a * xp[i];
      else if (beta == 0.0)
        for (int64_t i = s; i < e; ++i) yp[i] = a * xp[i];
      else
        for (int64_t i = s; i < e; ++i) yp[i] = bt * yp[i] + a * xp[i];
    });
  });
}

void add_bias(const Tensor& x, const Tensor& bias, Tensor& y) {
  int64_t cols = x.dim(-1);
  int64_t rows = cols ? x.numel() / cols : 0;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    const T* bp = bias.data<T>();
    T* yp = y.data<T>();
    parallel_for(rows, std::max<int64_t>(1, elem_grain / std::max<int64_t>(cols, 1)),
                 [&](int64_t s, int64_t e) {
                   for (int64_t r = s; r < e; ++r)
                     for (int64_t c = 0; c < cols; ++c) yp[r * cols + c] = xp[r * cols + c] + bp[c];
                 });
  });
}

void scale_rows(const Tensor& x, const Tensor& s, Tensor& y) {
  int64_t rows = s.numel();
  int64_t cols = rows ? x.numel() / rows : 0;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    const T* sp = s.data<T>();
    T* yp = y.data<T>();
    parallel_for(rows, std::max<int64_t>(1, elem_grain / std::max<int64_t>(cols, 1)),
                 [&](int64_t b, int64_t e) {
                   for (int64_t r = b; r < e; ++r)
                     for (int64_t c = 0; c < cols; ++c) yp[r * cols + c] = xp[r * cols + c] * sp[r];
                 });
  });
}

void row_dot(const Tensor& a, const Tensor& b, Tensor& out) {
  int64_t rows = out.numel();
  int64_t cols = rows ? a.numel() / rows : 0;
  LRA_DISPATCH_FLOAT(a.dtype(), T, [&] {
    const T* ap = a.data<T>();
    const T* bp = b.data<T>();
    T* op = out.data<T>();
    parallel_for(rows, std::max<int64_t>(1, elem_grain / std::max<int64_t>(cols, 1)),
                 [&](int64_t s, int64_t e) {
                   for (int64_t r = s; r < e; ++r) {
                     T acc = 0;
                     for (int64_t c = 0; c < cols; ++c) acc += ap[r * cols + c] * bp[r * cols + c];
                     op[r] = acc;
                   }
                 });
  });
}

double sum_all(const Tensor& x) {
  // Fixed chunks summed in double, then combined in chunk order.
  int64_t n = x.numel();
  int64_t chunks = (n + elem_grain - 1) / elem_grain;
  std::vector<double> partial(static_cast<std::size_t>(chunks), 0.0);
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
      for (int64_t ch = b; ch < e; ++ch) {
        double acc = 0;
        for (int64_t i = ch * elem_grain; i < std::min(n, (ch + 1) * elem_grain); ++i) acc += xp[i];
        partial[static_cast<std::size_t>(ch)] = acc;
      }
    });
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

void sum_rows(const Tensor& x, double alpha, Tensor& y) {
  int64_t cols = x.dim(-1);
  int64_t rows = y.numel();
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    parallel_for(rows, std::max<int64_t>(1, elem_grain / std::max<int64_t>(cols, 1)),
                 [&](int64_t s, int64_t e) {
                   for (int64_t r = s; r < e; ++r) {
                     T acc = 0;
                     for (int64_t c = 0; c < cols; ++c) acc += xp[r * cols + c];
                     yp[r] = static_cast<T>(alpha) * acc;
                   }
                 });
  });
}

void broadcast_rows(const Tensor& v, double alpha, Tensor& y) {
  int64_t rows = v.numel();
  int64_t cols = rows ? y.numel() / rows : 0;
  LRA_DISPATCH_FLOAT(y.dtype(), T, [&] {
    const T* vp = v.data<T>();
    T* yp = y.data<T>();
    parallel_for(rows, std::max<int64_t>(1, elem_grain / std::max<int64_t>(cols, 1)),
                 [&](int64_t s, int64_t e) {
                   for (int64_t r = s; r < e; ++r)
                     std::fill(yp + r * cols, yp + (r + 1) * cols, static_cast<T>(alpha) * vp[r]);
                 });
  });
}

void sum_leading(const Tensor& x, Tensor& y) {
  int64_t cols = y.numel();
  int64_t rows = cols ? x.numel() / cols : 0;
  const int64_t chunk = 256;
  int64_t chunks = (rows + chunk - 1) / chunk;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    std::vector<T> partial(static_cast<std::size_t>(std::max<int64_t>(chunks, 1) * cols), T(0));
    parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
      for (int64_t ch = b; ch < e; ++ch) {
        T* p = partial.data() + ch * cols;
        for (int64_t r = ch * chunk; r < std::min(rows, (ch + 1) * chunk); ++r)
          for (int64_t c = 0; c < cols; ++c) p[c] += xp[r * cols + c];
      }
    });
    T* yp = y.data<T>();
    std::fill(yp, yp + cols, T(0));
    for (int64_t ch = 0; ch < chunks; ++ch)
      for (int64_t c = 0; c < cols; ++c) yp[c] += partial[static_cast<std::size_t>(ch * cols + c)];
  });
}

void transpose12(const Tensor& x, Tensor& y) {
  int64_t d0 = x.dim(0), d1 = x.dim(1), d2 = x.dim(2), d3 = x.dim(3);
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    parallel_for(d0 * d2, std::max<int64_t>(1, elem_grain / std::max<int64_t>(d1 * d3, 1)),
                 [&](int64_t s, int64_t e) {
                   for (int64_t item = s; item < e; ++item) {
                     int64_t i = item / d2, k = item % d2;
                     for (int64_t j = 0; j < d1; ++j)
                       std::copy_n(xp + ((i * d1 + j) * d2 + k) * d3, d3,
                                   yp + ((i * d2 + k) * d1 + j) * d3);
                   }
                 });
  });
}

}  // namespace lra::core::cpu
