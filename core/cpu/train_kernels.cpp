// CPU kernels of the training ops (core/ops_train.h). Deterministic for any thread
// count: parallel loops write disjoint outputs; reductions use fixed chunks.
#include "core/cpu/train_kernels.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/cpu/gelu.h"
#include "core/dispatch.h"
#include "core/parallel.h"
#include "core/philox.h"
#include "core/rng.h"

namespace lra::core::cpu {
namespace {
constexpr int64_t row_grain = 256;
constexpr int64_t elem_grain = 1 << 15;
}  // namespace

void add_bias_inplace(Tensor& x, const Tensor& bias) {
  int64_t c = bias.dim(0), rows = c ? x.numel() / c : 0;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    T* xp = x.data<T>();
    const T* bp = bias.data<T>();
    parallel_for(rows, row_grain, [&](int64_t s, int64_t e) {
      for (int64_t r = s; r < e; ++r)
        for (int64_t j = 0; j < c; ++j) xp[r * c + j] += bp[j];
    });
  });
}

void embedding(const Tensor& table, const std::vector<int32_t>& ids, Tensor& y) {
  int64_t c = table.dim(1);
  LRA_DISPATCH_FLOAT(table.dtype(), T, [&] {
    const T* tp = table.data<T>();
    T* yp = y.data<T>();
    parallel_for(static_cast<int64_t>(ids.size()), row_grain, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r)
        std::memcpy(yp + r * c, tp + static_cast<int64_t>(ids[static_cast<std::size_t>(r)]) * c,
                    sizeof(T) * static_cast<std::size_t>(c));
    });
  });
}

void embedding_backward(const std::vector<int32_t>& ids, const Tensor& dy, Tensor& dtable) {
  int64_t c = dtable.dim(1);
  // Parallel over column blocks: each thread owns whole columns, rows in order.
  LRA_DISPATCH_FLOAT(dy.dtype(), T, [&] {
    const T* gp = dy.data<T>();
    T* dp = dtable.data<T>();
    parallel_for(c, 16, [&](int64_t cb, int64_t ce) {
      for (std::size_t r = 0; r < ids.size(); ++r) {
        T* dst = dp + static_cast<int64_t>(ids[r]) * c;
        const T* src = gp + static_cast<int64_t>(r) * c;
        for (int64_t j = cb; j < ce; ++j) dst[j] += src[j];
      }
    });
  });
}

void add_positions(Tensor& x, const Tensor& pos) {
  int64_t b = x.dim(0), n = x.dim(1), c = x.dim(2);
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    T* xp = x.data<T>();
    const T* pp = pos.data<T>();
    parallel_for(b * n, row_grain, [&](int64_t s, int64_t e) {
      for (int64_t r = s; r < e; ++r) {
        const T* prow = pp + (r % n) * c;
        T* xrow = xp + r * c;
        for (int64_t j = 0; j < c; ++j) xrow[j] += prow[j];
      }
    });
  });
}

void add_positions_backward(const Tensor& dy, Tensor& dpos) {
  int64_t b = dy.dim(0), n = dy.dim(1), c = dy.dim(2);
  LRA_DISPATCH_FLOAT(dy.dtype(), T, [&] {
    const T* gp = dy.data<T>();
    T* dp = dpos.data<T>();
    parallel_for(n, 64, [&](int64_t s, int64_t e) {
      for (int64_t t = s; t < e; ++t)
        for (int64_t i = 0; i < b; ++i) {
          const T* g = gp + (i * n + t) * c;
          T* d = dp + t * c;
          for (int64_t j = 0; j < c; ++j) d[j] += g[j];
        }
    });
  });
}

void prepend_row(const Tensor& x, const Tensor& cls, Tensor& y) {
  int64_t b = x.dim(0), n = x.dim(1), c = x.dim(2);
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    const T* cp = cls.data<T>();
    T* yp = y.data<T>();
    for (int64_t i = 0; i < b; ++i) {
      std::memcpy(yp + i * (n + 1) * c, cp, sizeof(T) * static_cast<std::size_t>(c));
      std::memcpy(yp + (i * (n + 1) + 1) * c, xp + i * n * c,
                  sizeof(T) * static_cast<std::size_t>(n * c));
    }
  });
}

void prepend_row_backward(const Tensor& dy, Tensor& dx, Tensor& dcls) {
  int64_t b = dy.dim(0), n = dy.dim(1) - 1, c = dy.dim(2);
  LRA_DISPATCH_FLOAT(dy.dtype(), T, [&] {
    const T* gp = dy.data<T>();
    T* xp = dx.data<T>();
    T* cp = dcls.data<T>();
    for (int64_t j = 0; j < c; ++j) cp[j] = T(0);
    for (int64_t i = 0; i < b; ++i) {
      for (int64_t j = 0; j < c; ++j) cp[j] += gp[i * (n + 1) * c + j];
      std::memcpy(xp + i * n * c, gp + (i * (n + 1) + 1) * c,
                  sizeof(T) * static_cast<std::size_t>(n * c));
    }
  });
}

namespace {
// Weight of position t of sequence i in the mean, and the count, for both mask dtypes.
template <typename T>
double mask_at(const Tensor& mask, int64_t idx) {
  return mask.dtype() == DType::f32 ? static_cast<double>(mask.data<float>()[idx])
                                    : mask.data<double>()[idx];
}
}  // namespace

void masked_mean(const Tensor& x, const Tensor& key_mask, Tensor& y) {
  int64_t b = x.dim(0), n = x.dim(1), c = x.dim(2);
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    parallel_for(b, 1, [&](int64_t s, int64_t e) {
      std::vector<double> acc(static_cast<std::size_t>(c));
      for (int64_t i = s; i < e; ++i) {
        std::fill(acc.begin(), acc.end(), 0.0);
        double count = 0;
        for (int64_t t = 0; t < n; ++t) {
          double w = key_mask.defined() ? mask_at<T>(key_mask, i * n + t) : 1.0;
          if (w == 0) continue;
          count += 1;
          const T* row = xp + (i * n + t) * c;
          for (int64_t j = 0; j < c; ++j) acc[static_cast<std::size_t>(j)] += row[j];
        }
        double inv = count > 0 ? 1.0 / count : 0.0;
        for (int64_t j = 0; j < c; ++j)
          yp[i * c + j] = static_cast<T>(acc[static_cast<std::size_t>(j)] * inv);
      }
    });
  });
}

void masked_mean_backward(const Tensor& dy, const Tensor& key_mask, Tensor& dx) {
  int64_t b = dx.dim(0), n = dx.dim(1), c = dx.dim(2);
  LRA_DISPATCH_FLOAT(dy.dtype(), T, [&] {
    const T* gp = dy.data<T>();
    T* dp = dx.data<T>();
    parallel_for(b, 1, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) {
        double count = 0;
        for (int64_t t = 0; t < n; ++t)
          if (!key_mask.defined() || mask_at<T>(key_mask, i * n + t) != 0) count += 1;
        T inv = static_cast<T>(count > 0 ? 1.0 / count : 0.0);
        for (int64_t t = 0; t < n; ++t) {
          bool real = !key_mask.defined() || mask_at<T>(key_mask, i * n + t) != 0;
          T* row = dp + (i * n + t) * c;
          for (int64_t j = 0; j < c; ++j) row[j] = real ? gp[i * c + j] * inv : T(0);
        }
      }
    });
  });
}

void pair_features(const Tensor& u, const Tensor& v, Tensor& y) {
  int64_t b = u.dim(0), c = u.dim(1);
  LRA_DISPATCH_FLOAT(u.dtype(), T, [&] {
    const T* up = u.data<T>();
    const T* vp = v.data<T>();
    T* yp = y.data<T>();
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < c; ++j) {
        T a = up[i * c + j], w = vp[i * c + j];
        T* row = yp + i * 4 * c;
        row[j] = a;
        row[c + j] = w;
        row[2 * c + j] = a * w;
        row[3 * c + j] = a - w;
      }
  });
}

void pair_features_backward(const Tensor& u, const Tensor& v, const Tensor& dy, Tensor& du,
                            Tensor& dv) {
  int64_t b = u.dim(0), c = u.dim(1);
  LRA_DISPATCH_FLOAT(u.dtype(), T, [&] {
    const T* up = u.data<T>();
    const T* vp = v.data<T>();
    const T* gp = dy.data<T>();
    T* dup = du.data<T>();
    T* dvp = dv.data<T>();
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < c; ++j) {
        const T* g = gp + i * 4 * c;
        T a = up[i * c + j], w = vp[i * c + j];
        dup[i * c + j] = g[j] + g[2 * c + j] * w + g[3 * c + j];
        dvp[i * c + j] = g[c + j] + g[2 * c + j] * a - g[3 * c + j];
      }
  });
}

namespace {
uint64_t dropout_threshold(double p) { return static_cast<uint64_t>(std::ldexp(p, 32)); }

// The elements of a dropout site in groups of 4 * group_blocks: element i's 32-bit draw is
// word i % 4 of Philox block i / 4 (counter (i / 4, stream), key seed; see
// core::dropout_keep_mask), and it is dropped when the draw is below p * 2^32. A group's
// blocks are drawn in one simple loop over the inline Philox of core/philox.h (the CUDA
// kernels' own), which the compiler vectorizes across blocks: ~5 ns a block on this
// machine's AVX-512 core, against ~25 one block at a time through core::philox4x32_10.
constexpr int64_t group_blocks = 64, group_elements = 4 * group_blocks;

// mask[e] for the elements of group g: 0 when dropped, else `keep`.
template <typename T>
void group_mask(int64_t g, uint64_t seed, uint64_t stream, uint64_t threshold, T keep,
                T (&mask)[group_elements]) {
  uint32_t bits[group_blocks][4];
  const uint64_t first = static_cast<uint64_t>(g) * group_blocks;
  for (int64_t l = 0; l < group_blocks; ++l) {
    const uint64_t blk = first + static_cast<uint64_t>(l);
    const philox::Block b = philox::philox4x32_10(
        static_cast<uint32_t>(blk), static_cast<uint32_t>(blk >> 32),
        static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32),
        static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
    for (int w = 0; w < 4; ++w) bits[l][w] = b.v[w];
  }
  for (int64_t l = 0; l < group_blocks; ++l)
    for (int w = 0; w < 4; ++w)
      mask[4 * l + w] = static_cast<uint64_t>(bits[l][w]) < threshold ? T(0) : keep;
}
}  // namespace

void dropout_keep_mask(double p, uint64_t seed, uint64_t stream, Tensor& mask) {
  const int64_t total = mask.numel(), groups = (total + group_elements - 1) / group_elements;
  const uint64_t threshold = dropout_threshold(p);
  LRA_DISPATCH_FLOAT(mask.dtype(), T, [&] {
    T* mp = mask.data<T>();
    const T keep = static_cast<T>(1.0 / (1.0 - p));
    parallel_for(groups, 16, [&](int64_t s, int64_t e) {
      T m[group_elements];
      for (int64_t g = s; g < e; ++g) {
        group_mask(g, seed, stream, threshold, keep, m);
        const int64_t base = g * group_elements, n = std::min(group_elements, total - base);
        std::copy(m, m + n, mp + base);
      }
    });
  });
}

void bias_dropout_add(const Tensor& y, const Tensor& bias, const DropoutDraw& drop,
                      const Tensor& residual, Tensor& out) {
  const int64_t total = y.numel(), c = y.dim(-1);
  const int64_t groups = (total + group_elements - 1) / group_elements;
  const uint64_t threshold = dropout_threshold(drop.p);
  LRA_DISPATCH_FLOAT(y.dtype(), T, [&] {
    const T* yp = y.data<T>();
    const T* bp = bias.defined() ? bias.data<T>() : nullptr;
    const T* rp = residual.defined() ? residual.data<T>() : nullptr;
    T* op = out.data<T>();
    const T keep = static_cast<T>(1.0 / (1.0 - drop.p));
    // One loop per combination of parts, without branches inside.
    auto run = [&](auto has_bias, auto dropping, auto has_residual) {
      parallel_for(groups, 16, [&](int64_t s, int64_t e) {
        T m[group_elements];
        int64_t j = (s * group_elements) % c;  // the bias column of element i, advanced with i
        for (int64_t g = s; g < e; ++g) {
          if constexpr (dropping) group_mask(g, drop.seed, drop.stream, threshold, keep, m);
          const int64_t base = g * group_elements, n = std::min(group_elements, total - base);
          for (int64_t q = 0; q < n; ++q) {
            const int64_t i = base + q;
            T v = yp[i];
            if constexpr (has_bias) {
              v += bp[j];
              j = j + 1 == c ? 0 : j + 1;
            }
            // Times the mask value (0 or keep), as core::mul(x, mask) computes it.
            if constexpr (dropping) v *= m[q];
            if constexpr (has_residual) v = rp[i] + v;
            op[i] = v;
          }
        }
      });
    };
    using yes = std::true_type;
    using no = std::false_type;
    auto with_residual = [&](auto has_bias, auto dropping) {
      if (rp)
        run(has_bias, dropping, yes{});
      else
        run(has_bias, dropping, no{});
    };
    auto with_dropping = [&](auto has_bias) {
      if (drop.p > 0)
        with_residual(has_bias, yes{});
      else
        with_residual(has_bias, no{});
    };
    if (bp)
      with_dropping(yes{});
    else
      with_dropping(no{});
  });
}

void bias_gelu(const Tensor& h, const Tensor& bias, Tensor& g) {
  const int64_t c = bias.dim(0), rows = h.numel() / c;
  LRA_DISPATCH_FLOAT(h.dtype(), T, [&] {
    const T* hp = h.data<T>();
    const T* bp = bias.data<T>();
    T* gp = g.data<T>();
    parallel_for(rows, row_grain, [&](int64_t s, int64_t e) {
      for (int64_t r = s; r < e; ++r)
        for (int64_t j = 0, i = r * c; j < c; ++j, ++i)
          gp[i] = gelu_value(static_cast<T>(hp[i] + bp[j]));
    });
  });
}

void bias_gelu_backward(const Tensor& h, const Tensor& bias, const Tensor& dg, Tensor& dz) {
  const int64_t c = bias.dim(0), rows = h.numel() / c;
  LRA_DISPATCH_FLOAT(h.dtype(), T, [&] {
    const T* hp = h.data<T>();
    const T* bp = bias.data<T>();
    const T* gp = dg.data<T>();
    T* dp = dz.data<T>();
    parallel_for(rows, row_grain, [&](int64_t s, int64_t e) {
      for (int64_t r = s; r < e; ++r)
        for (int64_t j = 0, i = r * c; j < c; ++j, ++i)
          dp[i] = gp[i] * gelu_slope(static_cast<T>(hp[i] + bp[j]));
    });
  });
}

void bias_heads_first(const Tensor& y, const Tensor& bias, Tensor& out) {
  // out [B, H, N, D]; y [B * N, H * D].
  const int64_t batch = out.dim(0), heads = out.dim(1), seq = out.dim(2), d = out.dim(3);
  LRA_DISPATCH_FLOAT(y.dtype(), T, [&] {
    const T* yp = y.data<T>();
    const T* bp = bias.data<T>();
    T* op = out.data<T>();
    parallel_for(batch * heads, 1, [&](int64_t s, int64_t e) {
      for (int64_t bh = s; bh < e; ++bh) {
        const int64_t b = bh / heads, h = bh % heads;
        const T* brow = bp + h * d;
        for (int64_t n = 0; n < seq; ++n) {
          const T* src = yp + (b * seq + n) * heads * d + h * d;
          T* dst = op + (bh * seq + n) * d;
          for (int64_t j = 0; j < d; ++j) dst[j] = src[j] + brow[j];
        }
      }
    });
  });
}

double cross_entropy(const Tensor& logits, const std::vector<int32_t>& labels, Tensor& probs,
                     int64_t& correct) {
  int64_t b = logits.dim(0), k = logits.dim(1);
  double total = 0;
  correct = 0;
  LRA_DISPATCH_FLOAT(logits.dtype(), T, [&] {
    const T* lp = logits.data<T>();
    T* pp = probs.data<T>();
    for (int64_t i = 0; i < b; ++i) {
      const T* row = lp + i * k;
      int64_t arg = 0;
      for (int64_t j = 1; j < k; ++j)
        if (row[j] > row[arg]) arg = j;
      double mx = static_cast<double>(row[arg]), z = 0;
      for (int64_t j = 0; j < k; ++j) z += std::exp(static_cast<double>(row[j]) - mx);
      double log_z = mx + std::log(z);
      for (int64_t j = 0; j < k; ++j)
        pp[i * k + j] = static_cast<T>(std::exp(static_cast<double>(row[j]) - log_z));
      int32_t label = labels[static_cast<std::size_t>(i)];
      total += log_z - static_cast<double>(row[label]);
      if (arg == label) ++correct;
    }
  });
  return b > 0 ? total / static_cast<double>(b) : 0.0;
}

void cross_entropy_backward(const Tensor& probs, const std::vector<int32_t>& labels, Tensor& dx) {
  int64_t b = probs.dim(0), k = probs.dim(1);
  LRA_DISPATCH_FLOAT(probs.dtype(), T, [&] {
    const T* pp = probs.data<T>();
    T* dp = dx.data<T>();
    T inv = static_cast<T>(1.0 / static_cast<double>(b));
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < k; ++j)
        dp[i * k + j] =
            (pp[i * k + j] - (j == labels[static_cast<std::size_t>(i)] ? T(1) : T(0))) * inv;
  });
}

double sum_squares(const Tensor& x) {
  int64_t n = x.numel();
  int64_t chunks = (n + elem_grain - 1) / elem_grain;
  std::vector<double> partial(static_cast<std::size_t>(std::max<int64_t>(chunks, 1)), 0.0);
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    parallel_for(n, elem_grain, [&](int64_t s, int64_t e) {
      double acc = 0;
      for (int64_t i = s; i < e; ++i)
        acc += static_cast<double>(xp[i]) * static_cast<double>(xp[i]);
      partial[static_cast<std::size_t>(s / elem_grain)] = acc;
    });
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

void adamw_update(Tensor& w, const Tensor& grad, Tensor& m, Tensor& v, double lr, double beta1,
                  double beta2, double eps, double weight_decay, double grad_scale, int64_t step) {
  double c1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  double c2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  LRA_DISPATCH_FLOAT(w.dtype(), T, [&] {
    T* wp = w.data<T>();
    const T* gp = grad.data<T>();
    T* mp = m.data<T>();
    T* vp = v.data<T>();
    const T b1 = static_cast<T>(beta1), b2 = static_cast<T>(beta2), gs = static_cast<T>(grad_scale);
    const T step_size = static_cast<T>(lr / c1), inv_c2 = static_cast<T>(1.0 / c2);
    const T decay = static_cast<T>(lr * weight_decay), e_ = static_cast<T>(eps);
    parallel_for(w.numel(), elem_grain, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) {
        T g = gp[i] * gs;
        mp[i] = b1 * mp[i] + (T(1) - b1) * g;
        vp[i] = b2 * vp[i] + (T(1) - b2) * g * g;
        T upd = step_size * mp[i] / (std::sqrt(vp[i] * inv_c2) + e_);
        wp[i] = wp[i] - decay * wp[i] - upd;
      }
    });
  });
}

}  // namespace lra::core::cpu
