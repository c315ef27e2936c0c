// CPU kernels for core/ops_random.h: random orthogonal projections, FAVOR+ / ReLU
// features, index sampling, row gathers and scatters, Skeinformer row normalisation and a
// blocked masked log-sum-exp. Parallel loops split work by sizes only (deterministic).
#include "core/cpu/random_kernels.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/dispatch.h"
#include "core/parallel.h"
#include "core/rng.h"

namespace lra::core::cpu {
namespace {

// Key mask as bytes ([B * N]); empty when the mask is undefined.
std::vector<unsigned char> mask_bytes(const Tensor& mask) {
  std::vector<unsigned char> keep;
  if (!mask.defined()) return keep;
  keep.resize(static_cast<std::size_t>(mask.numel()));
  if (mask.dtype() == DType::f32) {
    const float* m = mask.data<float>();
    for (std::size_t i = 0; i < keep.size(); ++i) keep[i] = m[i] != 0.0f;
  } else {
    const double* m = mask.data<double>();
    for (std::size_t i = 0; i < keep.size(); ++i) keep[i] = m[i] != 0.0;
  }
  return keep;
}

// Any float tensor as doubles (index and slot-weight tensors are small).
std::vector<double> as_doubles(const Tensor& t) {
  std::vector<double> out(static_cast<std::size_t>(t.numel()));
  if (t.dtype() == DType::f32) {
    const float* p = t.data<float>();
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = p[i];
  } else {
    const double* p = t.data<double>();
    std::copy(p, p + out.size(), out.begin());
  }
  return out;
}

// Real tokens of sequence b (N when unmasked).
int64_t real_count(const std::vector<unsigned char>& keep, int64_t b, int64_t seq) {
  if (keep.empty()) return seq;
  int64_t n = 0;
  for (int64_t j = 0; j < seq; ++j) n += keep[static_cast<std::size_t>(b * seq + j)];
  return n;
}

int64_t grain_rows(int64_t cols) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1));
}

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using ConstMap = Eigen::Map<const RowMatrix<T>>;
template <typename T>
using MutMap = Eigen::Map<RowMatrix<T>>;

}  // namespace

// ---------------------------------------------------------------- projections
std::vector<double> orthogonal_gaussian(int64_t rows, int64_t dim, uint64_t seed) {
  std::vector<double> out(static_cast<std::size_t>(rows * dim));
  int64_t blocks = (rows + dim - 1) / dim;
  Tensor g = Tensor::empty(Shape{dim, dim}, DType::f64);
  Tensor z = Tensor::empty(Shape{dim, dim}, DType::f64);
  for (int64_t blk = 0; blk < blocks; ++blk) {
    // Each block draws 2 dim^2 normals at its own offset: directions, then norms.
    uint64_t offset = static_cast<uint64_t>(blk) * 2 * static_cast<uint64_t>(dim * dim);
    fill_normal(g, seed, offset);
    fill_normal(z, seed, offset + static_cast<uint64_t>(dim * dim));
    double* a = g.data<double>();
    const double* zn = z.data<double>();
    // Modified Gram-Schmidt over the rows, run twice ("twice is enough") so the block is
    // orthonormal to rounding.
    for (int64_t i = 0; i < dim; ++i) {
      double* ri = a + i * dim;
      for (int pass = 0; pass < 2; ++pass) {
        for (int64_t j = 0; j < i; ++j) {
          const double* rj = a + j * dim;
          double dot = 0;
          for (int64_t c = 0; c < dim; ++c) dot += ri[c] * rj[c];
          for (int64_t c = 0; c < dim; ++c) ri[c] -= dot * rj[c];
        }
      }
      double norm = 0;
      for (int64_t c = 0; c < dim; ++c) norm += ri[c] * ri[c];
      norm = std::sqrt(norm);
      LRA_CHECK(norm > 1e-12, "orthogonal_gaussian: degenerate Gaussian block (seed {})", seed);
      for (int64_t c = 0; c < dim; ++c) ri[c] /= norm;
    }
    for (int64_t i = 0; i < dim && blk * dim + i < rows; ++i) {
      double chi = 0;
      for (int64_t c = 0; c < dim; ++c) chi += zn[i * dim + c] * zn[i * dim + c];
      chi = std::sqrt(chi);
      for (int64_t c = 0; c < dim; ++c)
        out[static_cast<std::size_t>((blk * dim + i) * dim + c)] = a[i * dim + c] * chi;
    }
  }
  return out;
}

// ---------------------------------------------------------------- random features
void favor_exp_features(const Tensor& u, const Tensor& x, const Tensor& key_mask, bool per_sequence,
                        Tensor& phi) {
  int64_t m = u.dim(-1), d = x.dim(-1), n = u.dim(-2);
  int64_t rows = u.numel() / std::max<int64_t>(m, 1);
  int64_t seqs = rows / std::max<int64_t>(n, 1);
  int64_t heads = u.dim(1);
  auto keep = mask_bytes(key_mask);
  auto is_real = [&](int64_t row) {
    if (keep.empty()) return true;
    int64_t p = row / n, b = p / heads;
    return keep[static_cast<std::size_t>(b * n + row % n)] != 0;
  };
  LRA_DISPATCH_FLOAT(u.dtype(), T, [&] {
    const T* up = u.data<T>();
    const T* xp = x.data<T>();
    T* out = phi.data<T>();
    const T inv_sqrt_m = static_cast<T>(1.0 / std::sqrt(static_cast<double>(m)));
    // out = exponent u - |x|^2 / 2 for row r (returns nothing; writes out row).
    auto exponent_row = [&](int64_t r) {
      const T* xr = xp + r * d;
      T sq = 0;
      for (int64_t c = 0; c < d; ++c) sq += xr[c] * xr[c];
      const T* ur = up + r * m;
      T* orow = out + r * m;
      for (int64_t i = 0; i < m; ++i) orow[i] = ur[i] - T(0.5) * sq;
    };
    if (!per_sequence) {
      parallel_for(rows, grain_rows(m), [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          T* orow = out + r * m;
          if (!is_real(r)) {
            std::fill(orow, orow + m, T(0));
            continue;
          }
          exponent_row(r);
          T c = *std::max_element(orow, orow + m);
          for (int64_t i = 0; i < m; ++i) orow[i] = std::exp(orow[i] - c) * inv_sqrt_m;
        }
      });
    } else {
      parallel_for(seqs, grain_rows(n * m), [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) {
          T c = -std::numeric_limits<T>::infinity();
          for (int64_t r = p * n; r < (p + 1) * n; ++r) {
            if (!is_real(r)) continue;
            exponent_row(r);
            c = std::max(c, *std::max_element(out + r * m, out + (r + 1) * m));
          }
          for (int64_t r = p * n; r < (p + 1) * n; ++r) {
            T* orow = out + r * m;
            if (!is_real(r)) {
              std::fill(orow, orow + m, T(0));
              continue;
            }
            for (int64_t i = 0; i < m; ++i) orow[i] = std::exp(orow[i] - c) * inv_sqrt_m;
          }
        }
      });
    }
  });
}

void relu_features(const Tensor& u, double eps, const Tensor& key_mask, Tensor& phi) {
  int64_t m = u.dim(-1), n = u.dim(-2), heads = u.dim(1);
  int64_t rows = u.numel() / std::max<int64_t>(m, 1);
  auto keep = mask_bytes(key_mask);
  LRA_DISPATCH_FLOAT(u.dtype(), T, [&] {
    const T* up = u.data<T>();
    T* out = phi.data<T>();
    const T e = static_cast<T>(eps);
    parallel_for(rows, grain_rows(m), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        bool real = keep.empty() || keep[static_cast<std::size_t>((r / n / heads) * n + r % n)];
        for (int64_t i = 0; i < m; ++i)
          out[r * m + i] = real ? std::max(up[r * m + i], T(0)) + e : T(0);
      }
    });
  });
}

void relu_features_backward(const Tensor& u, const Tensor& d_phi, const Tensor& key_mask,
                            Tensor& du) {
  int64_t m = u.dim(-1), n = u.dim(-2), heads = u.dim(1);
  int64_t rows = u.numel() / std::max<int64_t>(m, 1);
  auto keep = mask_bytes(key_mask);
  LRA_DISPATCH_FLOAT(u.dtype(), T, [&] {
    const T* up = u.data<T>();
    const T* dp = d_phi.data<T>();
    T* out = du.data<T>();
    parallel_for(rows, grain_rows(m), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        bool real = keep.empty() || keep[static_cast<std::size_t>((r / n / heads) * n + r % n)];
        for (int64_t i = 0; i < m; ++i)
          out[r * m + i] = (real && up[r * m + i] > T(0)) ? dp[r * m + i] : T(0);
      }
    });
  });
}

void safe_reciprocal(const Tensor& x, Tensor& y) {
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    parallel_for(x.numel(), 16384, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) yp[i] = xp[i] == T(0) ? T(0) : T(1) / xp[i];
    });
  });
}

// ---------------------------------------------------------------- sampling
namespace {
void set_owner(IndexSample& out, int64_t seqs, int64_t seq, int64_t samples) {
  double* idx = out.index.data<double>();
  double* valid = out.valid.data<double>();
  double* owner = out.owner.data<double>();
  std::vector<unsigned char> seen(static_cast<std::size_t>(seq));
  for (int64_t p = 0; p < seqs; ++p) {
    std::fill(seen.begin(), seen.end(), 0);
    for (int64_t s = samples - 1; s >= 0; --s) {
      int64_t at = p * samples + s;
      auto row = static_cast<std::size_t>(idx[at]);
      owner[at] = (valid[at] != 0 && !seen[row]) ? 1.0 : 0.0;
      if (valid[at] != 0) seen[row] = 1;
    }
  }
}
}  // namespace

void sample_rows_uniform(int64_t batch, int64_t heads, int64_t seq, int64_t samples,
                         const Tensor& key_mask, uint64_t seed, IndexSample& out) {
  auto keep = mask_bytes(key_mask);
  Tensor u = Tensor::empty(Shape{batch * heads * samples}, DType::f64);
  fill_uniform(u, seed, 0);
  const double* up = u.data<double>();
  double* idx = out.index.data<double>();
  double* valid = out.valid.data<double>();
  std::vector<int64_t> real;
  for (int64_t b = 0; b < batch; ++b) {
    real.clear();
    for (int64_t j = 0; j < seq; ++j)
      if (keep.empty() || keep[static_cast<std::size_t>(b * seq + j)]) real.push_back(j);
    auto n = static_cast<int64_t>(real.size());
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t s = 0; s < samples; ++s) {
        int64_t at = (b * heads + h) * samples + s;
        if (n == 0) {
          idx[at] = 0;
          valid[at] = 0;
          continue;
        }
        auto pick = std::min<int64_t>(static_cast<int64_t>(up[at] * static_cast<double>(n)), n - 1);
        idx[at] = static_cast<double>(real[static_cast<std::size_t>(pick)]);
        valid[at] = 1;
      }
    }
  }
  set_owner(out, batch * heads, seq, samples);
}

void sample_columns(const Tensor& weight, double power, int64_t batch, int64_t heads, int64_t seq,
                    int64_t samples, const Tensor& key_mask, uint64_t seed, IndexSample& out) {
  auto keep = mask_bytes(key_mask);
  int64_t seqs = batch * heads;
  Tensor u = Tensor::empty(Shape{seqs * seq}, DType::f64);
  fill_uniform(u, seed, 0);
  const double* up = u.data<double>();
  std::vector<double> w;
  if (weight.defined()) w = as_doubles(weight);
  double* idx = out.index.data<double>();
  double* valid = out.valid.data<double>();
  parallel_for(
      seqs, std::max<int64_t>(1, 4096 / std::max<int64_t>(seq, 1)),
      [&](int64_t begin, int64_t end) {
        // (class, key, column): class 1 for positive weight, 0 for zero weight; larger wins.
        struct Key {
          int cls;
          double key;
          int64_t col;
        };
        std::vector<Key> keys;
        std::vector<int64_t> chosen;
        for (int64_t p = begin; p < end; ++p) {
          int64_t b = p / heads;
          keys.clear();
          for (int64_t j = 0; j < seq; ++j) {
            if (!keep.empty() && !keep[static_cast<std::size_t>(b * seq + j)]) continue;
            double uj = up[p * seq + j];
            double wj = w.empty() ? 1.0 : std::pow(w[static_cast<std::size_t>(p * seq + j)], power);
            // log(u) / w: larger is drawn first; u == 0 gives -inf (last of its class).
            if (wj > 0 && std::isfinite(wj))
              keys.push_back({1, std::log(uj) / wj, j});
            else
              keys.push_back({0, uj, j});
          }
          auto take = std::min<int64_t>(samples, static_cast<int64_t>(keys.size()));
          auto better = [](const Key& a, const Key& c) {
            if (a.cls != c.cls) return a.cls > c.cls;
            if (a.key != c.key) return a.key > c.key;
            return a.col < c.col;
          };
          std::partial_sort(keys.begin(), keys.begin() + take, keys.end(), better);
          chosen.clear();
          for (int64_t s = 0; s < take; ++s)
            chosen.push_back(keys[static_cast<std::size_t>(s)].col);
          std::sort(chosen.begin(), chosen.end());
          for (int64_t s = 0; s < samples; ++s) {
            int64_t at = p * samples + s;
            idx[at] = s < take ? static_cast<double>(chosen[static_cast<std::size_t>(s)]) : 0.0;
            valid[at] = s < take ? 1.0 : 0.0;
          }
        }
      });
  set_owner(out, seqs, seq, samples);
}

// ---------------------------------------------------------------- gather / scatter
void gather_rows(const Tensor& x, const Tensor& index, const Tensor& w, Tensor& out) {
  int64_t seq = x.dim(2), c = x.dim(3), samples = index.dim(2);
  int64_t seqs = x.dim(0) * x.dim(1);
  auto idx = as_doubles(index);
  std::vector<double> wt;
  if (w.defined()) wt = as_doubles(w);
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    T* op = out.data<T>();
    parallel_for(seqs * samples, grain_rows(c), [&](int64_t begin, int64_t end) {
      for (int64_t at = begin; at < end; ++at) {
        int64_t p = at / samples;
        auto row = static_cast<int64_t>(idx[static_cast<std::size_t>(at)]);
        T weight = wt.empty() ? T(1) : static_cast<T>(wt[static_cast<std::size_t>(at)]);
        const T* src = xp + (p * seq + row) * c;
        T* dst = op + at * c;
        if (weight == T(0))
          std::fill(dst, dst + c, T(0));  // unused slot: zero even if the row holds garbage
        else
          for (int64_t k = 0; k < c; ++k) dst[k] = weight * src[k];
      }
    });
  });
}

void scatter_rows(Tensor& x, const Tensor& index, const Tensor& w, const Tensor& src,
                  ScatterMode mode) {
  int64_t seq = x.dim(2), c = x.dim(3), samples = index.dim(2);
  int64_t seqs = x.dim(0) * x.dim(1);
  auto idx = as_doubles(index);
  std::vector<double> wt;
  if (w.defined()) wt = as_doubles(w);
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    T* xp = x.data<T>();
    const T* sp = mode == ScatterMode::zero ? nullptr : src.data<T>();
    // One task per sequence: slots of a sequence may name the same row, so they run in order.
    parallel_for(seqs, grain_rows(samples * c), [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        for (int64_t s = 0; s < samples; ++s) {
          int64_t at = p * samples + s;
          T weight = wt.empty() ? T(1) : static_cast<T>(wt[static_cast<std::size_t>(at)]);
          if (weight == T(0)) continue;
          auto row = static_cast<int64_t>(idx[static_cast<std::size_t>(at)]);
          T* dst = xp + (p * seq + row) * c;
          if (mode == ScatterMode::zero) {
            std::fill(dst, dst + c, T(0));
          } else if (mode == ScatterMode::assign) {
            std::copy(sp + at * c, sp + (at + 1) * c, dst);
          } else {
            for (int64_t k = 0; k < c; ++k) dst[k] += weight * sp[at * c + k];
          }
        }
      }
    });
  });
}

void expand_key_mask(const Tensor& key_mask, int64_t heads, Tensor& out) {
  int64_t batch = out.dim(0), seq = out.dim(3);
  auto keep = mask_bytes(key_mask);
  LRA_DISPATCH_FLOAT(out.dtype(), T, [&] {
    T* op = out.data<T>();
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t j = 0; j < seq; ++j)
          op[(b * heads + h) * seq + j] =
              (keep.empty() || keep[static_cast<std::size_t>(b * seq + j)]) ? T(1) : T(0);
  });
}

// ---------------------------------------------------------------- Skeinformer
void skein_weights(const Tensor& logits, const Tensor& valid, const Tensor& key_mask,
                   SkeinNorm mode, const Tensor& lse, SkeinWeights& out) {
  int64_t heads = logits.dim(1), n = logits.dim(2), s_count = logits.dim(3);
  int64_t rows = logits.dim(0) * heads * n;
  auto keep = mask_bytes(key_mask);
  auto vd = as_doubles(valid);
  std::vector<int64_t> real(static_cast<std::size_t>(logits.dim(0)));
  for (int64_t b = 0; b < logits.dim(0); ++b)
    real[static_cast<std::size_t>(b)] = real_count(keep, b, n);
  LRA_DISPATCH_FLOAT(logits.dtype(), T, [&] {
    const T* lp = logits.data<T>();
    const T* lsep = mode == SkeinNorm::exact ? lse.data<T>() : nullptr;
    T* ep = out.e.data<T>();
    T* gp = out.g.data<T>();
    T* dp = out.dhat.data<T>();
    parallel_for(rows, grain_rows(s_count), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        int64_t p = r / n;
        const double* vr = vd.data() + p * s_count;
        const T* lr = lp + r * s_count;
        T* er = ep + r * s_count;
        int64_t used = 0;
        T mx = -std::numeric_limits<T>::infinity(), mean = 0;
        for (int64_t s = 0; s < s_count; ++s)
          if (vr[s] != 0) {
            ++used;
            mx = std::max(mx, lr[s]);
            mean += lr[s];
          }
        if (used == 0 || (lsep && !std::isfinite(lsep[r]))) {
          std::fill(er, er + s_count, T(0));
          gp[r] = 0;
          dp[r] = 0;
          continue;
        }
        T shift = lsep ? lsep[r] : mx;
        T total = 0;
        for (int64_t s = 0; s < s_count; ++s) {
          er[s] = vr[s] != 0 ? std::exp(lr[s] - shift) : T(0);
          total += er[s];
        }
        int64_t rest = real[static_cast<std::size_t>(p / heads)] - used;
        if (mode == SkeinNorm::adaptive && rest > 0) {
          gp[r] = std::exp(mean / static_cast<T>(used) - mx);
          dp[r] = total + static_cast<T>(rest) * gp[r];
        } else {
          gp[r] = 0;  // every real column drawn (or no fill-in): nothing to fill
          dp[r] = mode == SkeinNorm::exact ? T(1) : total;
        }
      }
    });
  });
}

void skein_weights_backward(const SkeinWeights& w, const Tensor& valid, const Tensor& key_mask,
                            SkeinNorm mode, const Tensor& d_e, const Tensor& d_dhat,
                            const Tensor& d_g, Tensor& d_logits) {
  int64_t heads = w.e.dim(1), n = w.e.dim(2), s_count = w.e.dim(3);
  int64_t rows = w.e.dim(0) * heads * n;
  auto keep = mask_bytes(key_mask);
  auto vd = as_doubles(valid);
  std::vector<int64_t> real(static_cast<std::size_t>(w.e.dim(0)));
  for (int64_t b = 0; b < w.e.dim(0); ++b)
    real[static_cast<std::size_t>(b)] = real_count(keep, b, n);
  LRA_DISPATCH_FLOAT(w.e.dtype(), T, [&] {
    const T* ep = w.e.data<T>();
    const T* gp = w.g.data<T>();
    const T* dep = d_e.data<T>();
    const T* ddp = d_dhat.defined() ? d_dhat.data<T>() : nullptr;
    const T* dgp = d_g.defined() ? d_g.data<T>() : nullptr;
    T* out = d_logits.data<T>();
    parallel_for(rows, grain_rows(s_count), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        int64_t p = r / n;
        const double* vr = vd.data() + p * s_count;
        int64_t used = 0;
        for (int64_t s = 0; s < s_count; ++s) used += vr[s] != 0;
        T dd = (ddp && mode != SkeinNorm::exact) ? ddp[r] : T(0);
        T fill = 0;  // d/dL_s of the g_r term, per valid slot
        if (mode == SkeinNorm::adaptive && gp[r] != T(0) && used > 0) {
          T rest = static_cast<T>(real[static_cast<std::size_t>(p / heads)] - used);
          T dg = (dgp ? dgp[r] : T(0)) + rest * dd;
          fill = dg * gp[r] / static_cast<T>(used);
        }
        const T* er = ep + r * s_count;
        const T* der = dep + r * s_count;
        T* orow = out + r * s_count;
        for (int64_t s = 0; s < s_count; ++s)
          orow[s] = vr[s] != 0 ? (der[s] + dd) * er[s] + fill : T(0);
      }
    });
  });
}

// Blocked over query rows so only [block, N] logits exist at a time.
void masked_logsumexp(const Tensor& q, const Tensor& k, const Tensor& key_mask, double scale,
                      Tensor& lse) {
  int64_t heads = q.dim(1), n = q.dim(2), d = q.dim(3);
  int64_t seqs = q.dim(0) * heads;
  constexpr int64_t block = 64;
  int64_t row_blocks = (n + block - 1) / block;
  auto keep = mask_bytes(key_mask);
  LRA_DISPATCH_FLOAT(q.dtype(), T, [&] {
    const T* qp = q.data<T>();
    const T* kp = k.data<T>();
    T* out = lse.data<T>();
    parallel_for(seqs * row_blocks,
                 std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(1, block * n * d)),
                 [&](int64_t begin, int64_t end) {
                   RowMatrix<T> logits;
                   for (int64_t item = begin; item < end; ++item) {
                     int64_t p = item / row_blocks, r0 = (item % row_blocks) * block;
                     int64_t rows = std::min(block, n - r0);
                     const unsigned char* kr =
                         keep.empty() ? nullptr : keep.data() + (p / heads) * n;
                     ConstMap<T> qb(qp + (p * n + r0) * d, rows, d);
                     ConstMap<T> kb(kp + p * n * d, n, d);
                     logits.noalias() = static_cast<T>(scale) * (qb * kb.transpose());
                     for (int64_t r = 0; r < rows; ++r) {
                       T mx = -std::numeric_limits<T>::infinity();
                       for (int64_t j = 0; j < n; ++j)
                         if (!kr || kr[j]) mx = std::max(mx, logits(r, j));
                       if (mx == -std::numeric_limits<T>::infinity()) {
                         out[p * n + r0 + r] = mx;
                         continue;
                       }
                       T total = 0;
                       for (int64_t j = 0; j < n; ++j)
                         if (!kr || kr[j]) total += std::exp(logits(r, j) - mx);
                       out[p * n + r0 + r] = mx + std::log(total);
                     }
                   }
                 });
  });
}

void masked_logsumexp_backward(const Tensor& q, const Tensor& k, const Tensor& key_mask,
                               double scale, const Tensor& lse, const Tensor& d_lse, Tensor& d_q,
                               Tensor& d_k) {
  int64_t heads = q.dim(1), n = q.dim(2), d = q.dim(3);
  int64_t seqs = q.dim(0) * heads;
  constexpr int64_t block = 64;
  auto keep = mask_bytes(key_mask);
  LRA_DISPATCH_FLOAT(q.dtype(), T, [&] {
    const T* qp = q.data<T>();
    const T* kp = k.data<T>();
    const T* lp = lse.data<T>();
    const T* dl = d_lse.data<T>();
    T* dqp = d_q.data<T>();
    T* dkp = d_k.data<T>();
    // One task per sequence: d_k sums over every row block of it.
    parallel_for(
        seqs, std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(1, n * n * d)),
        [&](int64_t begin, int64_t end) {
          RowMatrix<T> wts;
          for (int64_t p = begin; p < end; ++p) {
            const unsigned char* kr = keep.empty() ? nullptr : keep.data() + (p / heads) * n;
            ConstMap<T> kb(kp + p * n * d, n, d);
            MutMap<T> dkb(dkp + p * n * d, n, d);
            for (int64_t r0 = 0; r0 < n; r0 += block) {
              int64_t rows = std::min(block, n - r0);
              ConstMap<T> qb(qp + (p * n + r0) * d, rows, d);
              MutMap<T> dqb(dqp + (p * n + r0) * d, rows, d);
              wts.noalias() = static_cast<T>(scale) * (qb * kb.transpose());
              for (int64_t r = 0; r < rows; ++r) {
                T l = lp[p * n + r0 + r], g = dl[p * n + r0 + r];
                for (int64_t j = 0; j < n; ++j)
                  wts(r, j) =
                      ((!kr || kr[j]) && std::isfinite(l)) ? g * std::exp(wts(r, j) - l) : T(0);
              }
              dqb.noalias() += static_cast<T>(scale) * (wts * kb);
              dkb.noalias() += static_cast<T>(scale) * (wts.transpose() * qb);
            }
          }
        });
  });
}

}  // namespace lra::core::cpu
