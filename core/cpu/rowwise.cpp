// Row-wise kernels: masked softmax and layer norm, with their backwards.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <Eigen/Core>

#include "core/cpu/kernels.h"
#include "core/cpu/softmax_rows.h"
#include "core/dispatch.h"
#include "core/parallel.h"

namespace lra::core::cpu {
namespace {

int64_t grain_rows(int64_t cols) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)); }

}  // namespace

void softmax(const Tensor& x, const Tensor& key_mask, double scale, Tensor& y) {
  int64_t cols = x.dim(-1);
  int64_t rows = cols ? x.numel() / cols : 0;
  KeyMaskBytes mask(key_mask, cols);
  int64_t rows_per_batch = mask.batches ? rows / mask.batches : 0;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    const T s = static_cast<T>(scale);
    parallel_for(rows, grain_rows(cols), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        softmax_row(xp + r * cols, yp + r * cols, cols, mask.of(r / rows_per_batch), s);
    });
  });
}

void softmax_backward(const Tensor& y, const Tensor& dy, double scale, Tensor& dx) {
  int64_t cols = y.dim(-1);
  int64_t rows = cols ? y.numel() / cols : 0;
  LRA_DISPATCH_FLOAT(y.dtype(), T, [&] {
    const T* yp = y.data<T>();
    const T* gp = dy.data<T>();
    T* dp = dx.data<T>();
    const T s = static_cast<T>(scale);
    parallel_for(rows, grain_rows(cols), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        softmax_backward_row(yp + r * cols, gp + r * cols, dp + r * cols, cols, s);
    });
  });
}

void layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, Tensor& y,
                Tensor& mean, Tensor& rstd) {
  int64_t cols = x.dim(-1);
  int64_t rows = cols ? x.numel() / cols : 0;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    const T* g = gamma.data<T>();
    const T* b = beta.data<T>();
    T* yp = y.data<T>();
    T* mp = mean.data<T>();
    T* rp = rstd.data<T>();
    parallel_for(rows, grain_rows(cols), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const T* xr = xp + r * cols;
        T* yr = yp + r * cols;
        T mu = 0;
        for (int64_t c = 0; c < cols; ++c) mu += xr[c];
        mu /= static_cast<T>(cols);
        T var = 0;
        for (int64_t c = 0; c < cols; ++c) var += (xr[c] - mu) * (xr[c] - mu);
        var /= static_cast<T>(cols);
        T inv = T(1) / std::sqrt(var + static_cast<T>(eps));
        for (int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] - mu) * inv * g[c] + b[c];
        mp[r] = mu;
        rp[r] = inv;
      }
    });
  });
}

void layer_norm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean,
                         const Tensor& rstd, const Tensor& dy, const Tensor& residual, Tensor& dx,
                         Tensor& dgamma, Tensor& dbeta) {
  int64_t cols = x.dim(-1);
  int64_t rows = cols ? x.numel() / cols : 0;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    const T* g = gamma.data<T>();
    const T* mp = mean.data<T>();
    const T* rp = rstd.data<T>();
    const T* gp = dy.data<T>();
    T* dp = dx.data<T>();
    const T* res = residual.defined() ? residual.data<T>() : nullptr;
    // dgamma/dbeta: per fixed chunk of rows, partial sums; chunks combined in order.
    const int64_t chunk = 256;
    int64_t chunks = (rows + chunk - 1) / chunk;
    std::vector<T> partial(static_cast<std::size_t>(std::max<int64_t>(chunks, 1) * 2 * cols), T(0));
    parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
      for (int64_t ch = cb; ch < ce; ++ch) {
        T* pg = partial.data() + ch * 2 * cols;
        T* pb = pg + cols;
        for (int64_t r = ch * chunk; r < std::min(rows, (ch + 1) * chunk); ++r) {
          const T* xr = xp + r * cols;
          const T* gr = gp + r * cols;
          T* dr = dp + r * cols;
          T mu = mp[r], inv = rp[r];
          T mean_dxhat = 0, mean_dxhat_xhat = 0;
          for (int64_t c = 0; c < cols; ++c) {
            T xhat = (xr[c] - mu) * inv;
            T dxhat = gr[c] * g[c];
            mean_dxhat += dxhat;
            mean_dxhat_xhat += dxhat * xhat;
            pg[c] += gr[c] * xhat;
            pb[c] += gr[c];
          }
          mean_dxhat /= static_cast<T>(cols);
          mean_dxhat_xhat /= static_cast<T>(cols);
          for (int64_t c = 0; c < cols; ++c) {
            T xhat = (xr[c] - mu) * inv;
            dr[c] = inv * (gr[c] * g[c] - mean_dxhat - xhat * mean_dxhat_xhat);
          }
          if (res)
            for (int64_t c = 0; c < cols; ++c) dr[c] += res[r * cols + c];
        }
      }
    });
    T* dg = dgamma.data<T>();
    T* db = dbeta.data<T>();
    std::fill(dg, dg + cols, T(0));
    std::fill(db, db + cols, T(0));
    for (int64_t ch = 0; ch < chunks; ++ch)
      for (int64_t c = 0; c < cols; ++c) {
        dg[c] += partial[static_cast<std::size_t>(ch * 2 * cols + c)];
        db[c] += partial[static_cast<std::size_t>(ch * 2 * cols + cols + c)];
      }
  });
}

}  // namespace lra::core::cpu
