// CPU kernels of core/ops_attention.h. Deterministic for any thread count: every output
// element (or matrix) is computed by one fixed loop.
#include "core/cpu/attention_kernels.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/dispatch.h"
#include "core/parallel.h"
#include "core/rng.h"

namespace lra::core::cpu {
namespace {

constexpr int64_t elem_grain = 1 << 15;

bool mask_at(const Tensor& mask, int64_t i) {
  return mask.dtype() == DType::f32 ? mask.data<float>()[i] != 0.0f
                                    : mask.data<double>()[i] != 0.0;
}

// [B, H, N, C] or [B, N, C] as (batch, heads, seq, width).
struct SeqView {
  int64_t batch, heads, seq, width;
};
SeqView view_of(const Tensor& x) {
  if (x.rank() == 3) return {x.dim(0), 1, x.dim(1), x.dim(2)};
  return {x.dim(0), x.dim(1), x.dim(2), x.dim(3)};
}

}  // namespace

void attn_unary(AttnUnary op, const Tensor& x, Tensor& y) {
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    parallel_for(x.numel(), elem_grain, [&](int64_t b, int64_t e) {
      switch (op) {
        case AttnUnary::elu_plus_one:
          for (int64_t i = b; i < e; ++i) yp[i] = xp[i] > T(0) ? xp[i] + T(1) : std::exp(xp[i]);
          break;
        case AttnUnary::exp:
          for (int64_t i = b; i < e; ++i) yp[i] = std::exp(xp[i]);
          break;
        case AttnUnary::reciprocal_or_zero:
          for (int64_t i = b; i < e; ++i) yp[i] = xp[i] != T(0) ? T(1) / xp[i] : T(0);
          break;
      }
    });
  });
}

void attn_unary_backward(AttnUnary op, const Tensor& xy, const Tensor& dy, Tensor& dx) {
  LRA_DISPATCH_FLOAT(xy.dtype(), T, [&] {
    const T* p = xy.data<T>();
    const T* g = dy.data<T>();
    T* d = dx.data<T>();
    parallel_for(xy.numel(), elem_grain, [&](int64_t b, int64_t e) {
      switch (op) {
        case AttnUnary::elu_plus_one:
          for (int64_t i = b; i < e; ++i) d[i] = p[i] > T(0) ? g[i] : g[i] * std::exp(p[i]);
          break;
        case AttnUnary::exp:
          for (int64_t i = b; i < e; ++i) d[i] = g[i] * p[i];
          break;
        case AttnUnary::reciprocal_or_zero:
          for (int64_t i = b; i < e; ++i) d[i] = -g[i] * p[i] * p[i];
          break;
      }
    });
  });
}

void mask_seq(const Tensor& x, const Tensor& key_mask, Tensor& y) {
  SeqView v = view_of(x);
  std::vector<unsigned char> keep(static_cast<std::size_t>(v.batch * v.seq));
  for (int64_t i = 0; i < v.batch * v.seq; ++i) keep[static_cast<std::size_t>(i)] = mask_at(key_mask, i);
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    int64_t rows = v.batch * v.heads * v.seq;
    parallel_for(rows, std::max<int64_t>(1, elem_grain / std::max<int64_t>(1, v.width)),
                 [&](int64_t b, int64_t e) {
                   for (int64_t r = b; r < e; ++r) {
                     int64_t batch = r / (v.heads * v.seq), n = r % v.seq;
                     const T* src = xp + r * v.width;
                     T* dst = yp + r * v.width;
                     if (keep[static_cast<std::size_t>(batch * v.seq + n)])
                       std::copy(src, src + v.width, dst);
                     else
                       std::fill(dst, dst + v.width, T(0));
                   }
                 });
  });
}

void set_rows_identity(const Tensor& a, const Tensor& row_mask, Tensor& y) {
  SeqView v = view_of(a);  // width == seq == m
  LRA_DISPATCH_FLOAT(a.dtype(), T, [&] {
    const T* ap = a.data<T>();
    T* yp = y.data<T>();
    int64_t rows = v.batch * v.heads * v.seq;
    parallel_for(rows, 256, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        int64_t batch = r / (v.heads * v.seq), i = r % v.seq;
        const T* src = ap + r * v.width;
        T* dst = yp + r * v.width;
        if (mask_at(row_mask, batch * v.seq + i)) {
          std::copy(src, src + v.width, dst);
        } else {
          std::fill(dst, dst + v.width, T(0));
          dst[i] = T(1);
        }
      }
    });
  });
}

namespace {
// ‖A‖₁ (max abs column sum) and ‖A‖∞ (max abs row sum) of one m x m matrix, with the
// first maximising column / row.
template <typename T>
void norms(const T* a, int64_t m, T& n1, int64_t& col, T& ninf, int64_t& row, std::vector<T>& cols) {
  cols.assign(static_cast<std::size_t>(m), T(0));
  ninf = -1;
  row = 0;
  for (int64_t i = 0; i < m; ++i) {
    T s = 0;
    for (int64_t j = 0; j < m; ++j) {
      T x = std::abs(a[i * m + j]);
      s += x;
      cols[static_cast<std::size_t>(j)] += x;
    }
    if (s > ninf) {
      ninf = s;
      row = i;
    }
  }
  n1 = -1;
  col = 0;
  for (int64_t j = 0; j < m; ++j)
    if (cols[static_cast<std::size_t>(j)] > n1) {
      n1 = cols[static_cast<std::size_t>(j)];
      col = j;
    }
}
template <typename T> T sign(T x) { return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0)); }
}  // namespace

void pinv_init(const Tensor& a, Tensor& z0) {
  int64_t m = a.dim(-1);
  int64_t mats = m ? a.numel() / (m * m) : 0;
  LRA_DISPATCH_FLOAT(a.dtype(), T, [&] {
    const T* ap = a.data<T>();
    T* zp = z0.data<T>();
    parallel_for(mats, 1, [&](int64_t b, int64_t e) {
      std::vector<T> cols;
      for (int64_t p = b; p < e; ++p) {
        const T* x = ap + p * m * m;
        T* z = zp + p * m * m;
        T n1, ninf;
        int64_t col, row;
        norms(x, m, n1, col, ninf, row, cols);
        T c = (n1 > T(0) && ninf > T(0)) ? T(1) / (n1 * ninf) : T(0);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < m; ++j) z[i * m + j] = c * x[j * m + i];
      }
    });
  });
}

void pinv_init_backward(const Tensor& a, const Tensor& dz0, Tensor& da) {
  int64_t m = a.dim(-1);
  int64_t mats = m ? a.numel() / (m * m) : 0;
  LRA_DISPATCH_FLOAT(a.dtype(), T, [&] {
    const T* ap = a.data<T>();
    const T* gp = dz0.data<T>();
    T* dp = da.data<T>();
    parallel_for(mats, 1, [&](int64_t b, int64_t e) {
      std::vector<T> cols;
      for (int64_t p = b; p < e; ++p) {
        const T* x = ap + p * m * m;
        const T* g = gp + p * m * m;
        T* d = dp + p * m * m;
        T n1, ninf;
        int64_t col, row;
        norms(x, m, n1, col, ninf, row, cols);
        if (!(n1 > T(0) && ninf > T(0))) {
          std::fill(d, d + m * m, T(0));
          continue;
        }
        T c = T(1) / (n1 * ninf);
        // Z0 = c Aᵀ: dA = c dZ0ᵀ + (dc) ∂c/∂A, dc = Σ dZ0 ⊙ Aᵀ.
        T dc = 0;
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < m; ++j) {
            d[i * m + j] = c * g[j * m + i];
            dc += g[j * m + i] * x[i * m + j];
          }
        T dn1 = -dc * c / n1, dninf = -dc * c / ninf;
        for (int64_t i = 0; i < m; ++i) d[i * m + col] += dn1 * sign(x[i * m + col]);
        for (int64_t j = 0; j < m; ++j) d[row * m + j] += dninf * sign(x[row * m + j]);
      }
    });
  });
}

void crop2d(const Tensor& x, Tensor& y) {
  int64_t cols = x.dim(1), rows = y.dim(0), out_cols = y.dim(1);
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    for (int64_t r = 0; r < rows; ++r) std::copy(xp + r * cols, xp + r * cols + out_cols, yp + r * out_cols);
  });
}

void crop2d_backward_add(Tensor& dx, const Tensor& dy) {
  int64_t cols = dx.dim(1), rows = dy.dim(0), in_cols = dy.dim(1);
  LRA_DISPATCH_FLOAT(dx.dtype(), T, [&] {
    T* dp = dx.data<T>();
    const T* gp = dy.data<T>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < in_cols; ++c) dp[r * cols + c] += gp[r * in_cols + c];
  });
}

void attn_dropout_mask(double p, uint64_t seed, uint64_t offset, Tensor& y) {
  fill_uniform(y, seed, offset);
  LRA_DISPATCH_FLOAT(y.dtype(), T, [&] {
    T* yp = y.data<T>();
    const T keep = static_cast<T>(1.0 / (1.0 - p)), thr = static_cast<T>(p);
    parallel_for(y.numel(), elem_grain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) yp[i] = yp[i] < thr ? T(0) : keep;
    });
  });
}

}  // namespace lra::core::cpu
