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

// The conv of one sequence is a sum over taps j of the whole [N, D] block shifted by
// j - K/2 rows: each tap is one long contiguous axpy (or dot), which vectorises far
// better than per-row loops over D channels.
namespace {

// Rows n of the output that tap shift s can reach: [max(0, -s), min(seq, seq - s)).
struct TapRange {
  int64_t first, last;
};
TapRange tap_range(int64_t shift, int64_t seq) {
  return {std::max<int64_t>(0, -shift), std::min(seq, seq - shift)};
}

constexpr int64_t tile_rows = 64;

// sum_i a[i] b[i] with 16 independent lanes summed in order: vectorisable without
// reassociation, and the same result for any thread count.
template <typename T> T lane_dot(const T* a, const T* b, int64_t n) {
  constexpr int lanes = 16;
  T acc[lanes] = {};
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes)
    for (int l = 0; l < lanes; ++l) acc[l] += a[i + l] * b[i + l];
  for (; i < n; ++i) acc[0] += a[i] * b[i];
  T total = 0;
  for (int l = 0; l < lanes; ++l) total += acc[l];
  return total;
}

}  // namespace

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
        // y[n] += w[j] x[n + s] with s = j - half, over tiles of rows that stay in L1.
        for (int64_t t0 = 0; t0 < seq; t0 += tile_rows) {
          int64_t t1 = std::min(seq, t0 + tile_rows);
          std::fill(ys + t0 * width, ys + t1 * width, T(0));
          for (int64_t j = 0; j < taps; ++j) {
            int64_t shift = j - half;
            TapRange r = tap_range(shift, seq);
            int64_t first = std::max(r.first, t0), last = std::min(r.last, t1);
            if (last <= first) continue;
            T wj = wh[j];
            T* out = ys + first * width;
            const T* in = xs + (first + shift) * width;
            for (int64_t i = 0; i < (last - first) * width; ++i) out[i] += wj * in[i];
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
    // Per sequence: dx[n + s] += w[j] dy[n] and partial[bh, j] = sum_n dy[n] . x[n + s].
    std::vector<T> partial(static_cast<std::size_t>(batch * heads * taps), T(0));
    parallel_for(batch * heads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        const T* gs = gp + bh * seq * width;
        const T* xs = xp + bh * seq * width;
        T* ds = dxp + bh * seq * width;
        const T* wh = wp + (bh % heads) * taps;
        // dx[m] += w[j] dy[m - s] over tiles of rows m of dx (in L1), then the tap sums.
        for (int64_t t0 = 0; t0 < seq; t0 += tile_rows) {
          int64_t t1 = std::min(seq, t0 + tile_rows);
          std::fill(ds + t0 * width, ds + t1 * width, T(0));
          for (int64_t j = 0; j < taps; ++j) {
            int64_t shift = j - half;
            // rows m = n + shift with n in the tap's range, clipped to the tile
            TapRange r = tap_range(shift, seq);
            int64_t first = std::max(r.first + shift, t0), last = std::min(r.last + shift, t1);
            if (last <= first) continue;
            T wj = wh[j];
            T* out = ds + first * width;
            const T* g = gs + (first - shift) * width;
            for (int64_t i = 0; i < (last - first) * width; ++i) out[i] += wj * g[i];
          }
        }
        for (int64_t j = 0; j < taps; ++j) {
          int64_t shift = j - half;
          TapRange r = tap_range(shift, seq);
          if (r.last <= r.first) continue;
          partial[static_cast<std::size_t>(bh * taps + j)] =
              lane_dot(gs + r.first * width, xs + (r.first + shift) * width,
                       (r.last - r.first) * width);
        }
      }
    });
    // dw[h, j] = sum over sequences in batch order (deterministic).
    T* dwp = dw.data<T>();
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t j = 0; j < taps; ++j) {
        T total = 0;
        for (int64_t b = 0; b < batch; ++b)
          total += partial[static_cast<std::size_t>((b * heads + h) * taps + j)];
        dwp[h * taps + j] = total;
      }
  });
}

}  // namespace lra::core::cpu
