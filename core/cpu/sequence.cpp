// Kernels along the sequence axis: segment means (Nyström landmarks) and depthwise conv.
#include <algorithm>
#include <vector>

#include "core/cpu/kernels.h"
#include "core/dispatch.h"
#include "core/parallel.h"

namespace lra::core::cpu {
namespace {

// Positions of the real tokens of sequence b (all positions without a mask).
std::vector<int64_t> real_positions(const Tensor& key_mask, int64_t b, int64_t n) {
  std::vector<int64_t> pos;
  pos.reserve(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    bool keep = true;
    if (key_mask.defined())
      keep = key_mask.dtype() == DType::f32 ? key_mask.data<float>()[b * n + i] != 0.0f
                                            : key_mask.data<double>()[b * n + i] != 0.0;
    if (keep) pos.push_back(i);
  }
  return pos;
}

// First rank of segment s when n tokens go to m segments, the first m - n % m of
// them holding n / m tokens and the rest one more.
int64_t segment_start(int64_t s, int64_t n, int64_t m) {
  int64_t q = n / m, short_segments = m - n % m;
  return s * q + std::max<int64_t>(0, s - short_segments);
}

struct SeqView {
  int64_t batch, heads, seq, width;
};
SeqView view_of(const Tensor& x) {
  if (x.rank() == 3) return {x.dim(0), 1, x.dim(1), x.dim(2)};
  return {x.dim(0), x.dim(1), x.dim(2), x.dim(3)};
}

}  // namespace

void segment_means(const Tensor& x, int64_t m, const Tensor& key_mask, Tensor& means,
                   Tensor& counts) {
  SeqView v = view_of(x);
  std::vector<std::vector<int64_t>> positions;
  for (int64_t b = 0; b < v.batch; ++b) positions.push_back(real_positions(key_mask, b, v.seq));
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    T* mp = means.data<T>();
    T* cp = counts.data<T>();
    for (int64_t b = 0; b < v.batch; ++b) {
      int64_t n = static_cast<int64_t>(positions[static_cast<std::size_t>(b)].size());
      for (int64_t s = 0; s < m; ++s)
        cp[b * m + s] = static_cast<T>(segment_start(s + 1, n, m) - segment_start(s, n, m));
    }
    parallel_for(v.batch * v.heads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        int64_t b = bh / v.heads;
        const auto& pos = positions[static_cast<std::size_t>(b)];
        int64_t n = static_cast<int64_t>(pos.size());
        const T* xs = xp + bh * v.seq * v.width;
        for (int64_t s = 0; s < m; ++s) {
          T* out = mp + (bh * m + s) * v.width;
          std::fill(out, out + v.width, T(0));
          int64_t r0 = segment_start(s, n, m), r1 = segment_start(s + 1, n, m);
          for (int64_t r = r0; r < r1; ++r) {
            const T* row = xs + pos[static_cast<std::size_t>(r)] * v.width;
            for (int64_t d = 0; d < v.width; ++d) out[d] += row[d];
          }
          if (r1 > r0) {
            T inv = T(1) / static_cast<T>(r1 - r0);
            for (int64_t d = 0; d < v.width; ++d) out[d] *= inv;
          }
        }
      }
    });
  });
}

void segment_means_backward(const Tensor& d_means, const Tensor& key_mask, Tensor& dx) {
  SeqView v = view_of(dx);
  int64_t m = d_means.dim(-2);
  LRA_DISPATCH_FLOAT(dx.dtype(), T, [&] {
    const T* gp = d_means.data<T>();
    T* dp = dx.data<T>();
    std::fill(dp, dp + dx.numel(), T(0));
    std::vector<std::vector<int64_t>> positions;
    for (int64_t b = 0; b < v.batch; ++b) positions.push_back(real_positions(key_mask, b, v.seq));
    parallel_for(v.batch * v.heads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        const auto& pos = positions[static_cast<std::size_t>(bh / v.heads)];
        int64_t n = static_cast<int64_t>(pos.size());
        T* ds = dp + bh * v.seq * v.width;
        for (int64_t s = 0; s < m; ++s) {
          int64_t r0 = segment_start(s, n, m), r1 = segment_start(s + 1, n, m);
          if (r1 == r0) continue;
          const T* g = gp + (bh * m + s) * v.width;
          T inv = T(1) / static_cast<T>(r1 - r0);
          for (int64_t r = r0; r < r1; ++r) {
            T* row = ds + pos[static_cast<std::size_t>(r)] * v.width;
            for (int64_t d = 0; d < v.width; ++d) row[d] = g[d] * inv;
          }
        }
      }
    });
  });
}

void depthwise_conv_seq(const Tensor& x, const Tensor& w, Tensor& y) {
  int64_t batch = x.dim(0), heads = x.dim(1), seq = x.dim(2), width = x.dim(3);
  int64_t taps = w.dim(1), half = taps / 2;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    const T* wp = w.data<T>();
    T* yp = y.data<T>();
    parallel_for(batch * heads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        const T* xs = xp + bh * seq * width;
        T* ys = yp + bh * seq * width;
        const T* wh = wp + (bh % heads) * taps;
        for (int64_t n = 0; n < seq; ++n) {
          T* out = ys + n * width;
          std::fill(out, out + width, T(0));
          int64_t j0 = std::max<int64_t>(0, half - n), j1 = std::min(taps, seq - n + half);
          for (int64_t j = j0; j < j1; ++j) {
            const T* in = xs + (n + j - half) * width;
            for (int64_t d = 0; d < width; ++d) out[d] += wh[j] * in[d];
          }
        }
      }
    });
  });
}

void depthwise_conv_seq_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor& dx,
                                 Tensor& dw) {
  int64_t batch = x.dim(0), heads = x.dim(1), seq = x.dim(2), width = x.dim(3);
  int64_t taps = w.dim(1), half = taps / 2;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    const T* wp = w.data<T>();
    const T* gp = dy.data<T>();
    T* dxp = dx.data<T>();
    T* dwp = dw.data<T>();
    // dx[n'] = sum_j w[j] dy[n' - j + half]
    parallel_for(batch * heads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        const T* gs = gp + bh * seq * width;
        T* ds = dxp + bh * seq * width;
        const T* wh = wp + (bh % heads) * taps;
        for (int64_t n = 0; n < seq; ++n) {
          T* out = ds + n * width;
          std::fill(out, out + width, T(0));
          for (int64_t j = 0; j < taps; ++j) {
            int64_t src = n - j + half;
            if (src < 0 || src >= seq) continue;
            const T* g = gs + src * width;
            for (int64_t d = 0; d < width; ++d) out[d] += wh[j] * g[d];
          }
        }
      }
    });
    // dw[h, j] = sum_{b, n, d} dy[b, h, n, d] x[b, h, n + j - half, d]. Work items are
    // (head, fixed chunk of sequences); each keeps per-(tap, channel) partial sums so a
    // row of x is reused by every tap while it is in cache. Partials are combined in
    // chunk order, then over channels: deterministic for any thread count.
    const int64_t seqs_per_chunk = 4;
    int64_t chunks = (batch + seqs_per_chunk - 1) / seqs_per_chunk;
    std::vector<T> partial(static_cast<std::size_t>(heads * chunks * taps * width), T(0));
    parallel_for(heads * chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        int64_t h = item / chunks, ch = item % chunks;
        T* acc = partial.data() + item * taps * width;
        for (int64_t b = ch * seqs_per_chunk; b < std::min(batch, (ch + 1) * seqs_per_chunk); ++b) {
          const T* gs = gp + (b * heads + h) * seq * width;
          const T* xs = xp + (b * heads + h) * seq * width;
          for (int64_t n = 0; n < seq; ++n) {
            const T* g = gs + n * width;
            int64_t j0 = std::max<int64_t>(0, half - n), j1 = std::min(taps, seq - n + half);
            for (int64_t j = j0; j < j1; ++j) {
              const T* in = xs + (n + j - half) * width;
              T* a = acc + j * width;
              for (int64_t d = 0; d < width; ++d) a[d] += g[d] * in[d];
            }
          }
        }
      }
    });
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t j = 0; j < taps; ++j) {
        T total = 0;
        for (int64_t d = 0; d < width; ++d) {
          T lane = 0;
          for (int64_t ch = 0; ch < chunks; ++ch)
            lane += partial[static_cast<std::size_t>(((h * chunks + ch) * taps + j) * width + d)];
          total += lane;
        }
        dwp[h * taps + j] = total;
      }
  });
}

}  // namespace lra::core::cpu
