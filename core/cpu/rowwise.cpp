// Row-wise kernels: masked softmax and layer norm, with their backwards.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <Eigen/Core>

#include "core/cpu/kernels.h"
#include "core/dispatch.h"
#include "core/parallel.h"

namespace lra::core::cpu {
namespace {

// Reads mask element i as "is a token" for any float dtype.
bool mask_at(const Tensor& mask, int64_t i) {
  return mask.dtype() == DType::f32 ? mask.data<float>()[i] != 0.0f
                                    : mask.data<double>()[i] != 0.0;
}

int64_t grain_rows(int64_t cols) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)); }

}  // namespace

void softmax(const Tensor& x, const Tensor& key_mask, double scale, Tensor& y) {
  int64_t cols = x.dim(-1);
  int64_t rows = cols ? x.numel() / cols : 0;
  bool masked = key_mask.defined();
  int64_t batches = masked ? key_mask.dim(0) : 1;
  int64_t rows_per_batch = batches ? rows / batches : 0;
  // Expand the mask to bytes once: row r uses keep[(r / rows_per_batch) * cols + c].
  std::vector<unsigned char> keep;
  std::vector<unsigned char> full;  // per batch: every key kept (the unmasked fast path)
  if (masked) {
    keep.resize(static_cast<std::size_t>(key_mask.numel()));
    for (int64_t i = 0; i < key_mask.numel(); ++i) keep[static_cast<std::size_t>(i)] = mask_at(key_mask, i);
    full.assign(static_cast<std::size_t>(batches), 1);
    for (int64_t i = 0; i < key_mask.numel(); ++i)
      if (!keep[static_cast<std::size_t>(i)]) full[static_cast<std::size_t>(i / cols)] = 0;
  }
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    const T s = static_cast<T>(scale);
    parallel_for(rows, grain_rows(cols), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const T* xr = xp + r * cols;
        T* yr = yp + r * cols;
        int64_t batch = r / rows_per_batch;
        const unsigned char* kr =
            masked && !full[static_cast<std::size_t>(batch)] ? keep.data() + batch * cols : nullptr;
        T max_logit = -std::numeric_limits<T>::infinity();
        if (kr) {
          for (int64_t c = 0; c < cols; ++c)
            if (kr[c]) max_logit = std::max(max_logit, s * xr[c]);
        } else if (cols > 0) {
          Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> xa(xr, cols);
          max_logit = s >= T(0) ? s * xa.maxCoeff() : s * xa.minCoeff();
        }
        if (max_logit == -std::numeric_limits<T>::infinity()) {
          std::fill(yr, yr + cols, T(0));  // every key masked: the row attends to nothing
          continue;
        }
        // Vectorised exp over the row (Eigen), then masked entries set to exactly 0.
        Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> xa(xr, cols);
        Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> ya(yr, cols);
        ya = (s * xa - max_logit).exp();
        if (kr)
          for (int64_t c = 0; c < cols; ++c)
            if (!kr[c]) yr[c] = T(0);
        T inv = T(1) / ya.sum();
        ya *= inv;
      }
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
      for (int64_t r = begin; r < end; ++r) {
        const T* yr = yp + r * cols;
        const T* gr = gp + r * cols;
        T* dr = dp + r * cols;
        Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> ya(yr, cols), ga(gr, cols);
        Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> da(dr, cols);
        T dot = (ya * ga).sum();  // vectorised; a fixed order for a given row length
        da = s * ya * (ga - dot);
      }
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
                         const Tensor& rstd, const Tensor& dy, Tensor& dx, Tensor& dgamma,
                         Tensor& dbeta) {
  int64_t cols = x.dim(-1);
  int64_t rows = cols ? x.numel() / cols : 0;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    const T* g = gamma.data<T>();
    const T* mp = mean.data<T>();
    const T* rp = rstd.data<T>();
    const T* gp = dy.data<T>();
    T* dp = dx.data<T>();
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
