// Kernels along the sequence axis: segment means (Nyström landmarks) and depthwise conv.
#include <algorithm>
#include <vector>

#include "core/cpu/kernels.h"
#include "core/cpu/key_mask_bytes.h"
#include "core/cpu/simd.h"
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

void segment_means_backward_add(Tensor& dx, const Tensor& d_means, const Tensor& key_mask) {
  SeqView v = view_of(dx);
  int64_t m = d_means.dim(-2);
  LRA_DISPATCH_FLOAT(dx.dtype(), T, [&] {
    const T* gp = d_means.data<T>();
    T* dp = dx.data<T>();
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
            for (int64_t d = 0; d < v.width; ++d) row[d] += g[d] * inv;
          }
        }
      }
    });
  });
}

// The conv of one sequence, y[n] = sum_j w[j] x[n + j - K/2]: rows that see every tap go
// in blocks of row_block rows x one vector of columns whose accumulators stay in
// registers through all K taps, so a tap costs one load and one FMA per vector and the
// block's rows are independent FMA chains. (Tap-by-tap axpys over the whole sequence
// stored every partial sum back: K stores per output.) Every output element sums its
// taps in ascending order on every path, so the blocking never changes a result.
// The backward's dx is the same conv with the taps reversed (K is odd), and dw[j], the dot
// of dy with x shifted by j, is summed for tap_group taps per row of dy, again with the
// accumulators in registers.
namespace {

using simd::kLanes;
using simd::load;
using simd::store;
using simd::Vec;

constexpr int64_t row_block = 8;  // conv rows per register block
constexpr int64_t tap_group = 8;  // dw taps per register block

// Taps j of output row n that read inside the sequence: [first, last).
struct TapSpan {
  int64_t first, last;
};
TapSpan taps_inside(int64_t n, int64_t seq, int64_t taps) {
  int64_t half = taps / 2;
  return {std::max<int64_t>(0, half - n), std::min(taps, seq - n + half)};
}

// Where the conv of one sequence goes: y = the result, or y += it (accumulate); rows n
// with keep[n] == 0 get 0 (or nothing added). keep == nullptr: every row.
template <typename T> struct ConvOut {
  T* y;
  bool accumulate;
  const unsigned char* keep;
  bool kept(int64_t n) const { return !keep || keep[n]; }
  void put(int64_t at, const Vec<T>& v, bool row_kept) const {
    if (accumulate) {
      if (row_kept) store(y + at, load(y + at) + v);
    } else {
      store(y + at, row_kept ? v : Vec<T>{});
    }
  }
  void put(int64_t at, T v, bool row_kept) const {
    if (accumulate) y[at] += row_kept ? v : T(0);
    else y[at] = row_kept ? v : T(0);
  }
};

// Output row n, columns [c0, c1), taps clipped at the sequence ends.
template <typename T>
void conv_row(const T* x, const T* w, const ConvOut<T>& out, int64_t n, int64_t seq, int64_t width,
              int64_t taps, int64_t c0, int64_t c1) {
  constexpr int64_t lanes = kLanes<T>;
  TapSpan s = taps_inside(n, seq, taps);
  const T* base = x + (n - taps / 2) * width;
  bool kept = out.kept(n);
  int64_t c = c0;
  for (; c + lanes <= c1; c += lanes) {
    Vec<T> acc{};
    for (int64_t j = s.first; j < s.last; ++j) acc += w[j] * load(base + j * width + c);
    out.put(n * width + c, acc, kept);
  }
  for (; c < c1; ++c) {
    T acc = 0;
    for (int64_t j = s.first; j < s.last; ++j) acc += w[j] * base[j * width + c];
    out.put(n * width + c, acc, kept);
  }
}

template <typename T>
void conv_sequence(const T* x, const T* w, const ConvOut<T>& out, int64_t seq, int64_t width,
                   int64_t taps) {
  constexpr int64_t lanes = kLanes<T>;
  int64_t half = taps / 2;
  // Rows [lo, hi) see every tap; the blocks cover [lo, blocked), whole vectors of columns.
  int64_t lo = std::min(half, seq), hi = std::max(lo, seq - half);
  int64_t blocked = lo + (hi - lo) / row_block * row_block, vector_cols = width / lanes * lanes;
  for (int64_t n = lo; n < blocked; n += row_block) {
    const T* base = x + (n - half) * width;
    for (int64_t c = 0; c < vector_cols; c += lanes) {
      Vec<T> acc[row_block] = {};
      for (int64_t j = 0; j < taps; ++j) {
        T wj = w[j];
#pragma GCC unroll 8
        for (int64_t r = 0; r < row_block; ++r) acc[r] += wj * load(base + (r + j) * width + c);
      }
#pragma GCC unroll 8
      for (int64_t r = 0; r < row_block; ++r) out.put((n + r) * width + c, acc[r], out.kept(n + r));
    }
    for (int64_t r = 0; r < row_block; ++r)
      conv_row(x, w, out, n + r, seq, width, taps, vector_cols, width);
  }
  for (int64_t n = 0; n < lo; ++n) conv_row(x, w, out, n, seq, width, taps, 0, width);
  for (int64_t n = blocked; n < seq; ++n) conv_row(x, w, out, n, seq, width, taps, 0, width);
}

// sums[j - j0] = sum over rows n of dy[n] . x[n + j - K/2] for the taps j in
// [j0, j0 + tap_group) (taps >= K contribute nothing). Per tap: vector lanes accumulate
// over rows, then the lanes and the leftover columns are added in a fixed order.
template <typename T>
void tap_dots_group(const T* x, const T* dy, T* sums, int64_t seq, int64_t width, int64_t taps,
                    int64_t j0) {
  constexpr int64_t lanes = kLanes<T>;
  int64_t half = taps / 2, vector_cols = width / lanes * lanes;
  // Rows where every tap of the group is a real tap reading inside the sequence.
  bool whole = j0 + tap_group <= taps;
  int64_t lo = std::clamp<int64_t>(half - j0, 0, seq);
  int64_t hi = whole ? std::clamp<int64_t>(seq + half - (j0 + tap_group - 1), lo, seq) : lo;
  T tail[tap_group] = {};
  for (int64_t c = 0; c < vector_cols; c += lanes) {
    Vec<T> acc[tap_group] = {};
    for (int64_t n = lo; n < hi; ++n) {
      Vec<T> g = load(dy + n * width + c);
      const T* base = x + (n + j0 - half) * width + c;
#pragma GCC unroll 8
      for (int64_t t = 0; t < tap_group; ++t) acc[t] += g * load(base + t * width);
    }
    // The rows outside [lo, hi), where some taps of the group fall outside. (acc is only
    // ever indexed by unrolled constants: a run-time index would force it into memory.)
    for (int64_t n = 0; n < seq; ++n) {
      if (n == lo) n = hi;
      if (n >= seq) break;
      TapSpan s = taps_inside(n, seq, taps);
      Vec<T> g = load(dy + n * width + c);
#pragma GCC unroll 8
      for (int64_t t = 0; t < tap_group; ++t)
        if (j0 + t >= s.first && j0 + t < s.last)
          acc[t] += g * load(x + (n + j0 + t - half) * width + c);
    }
    for (int64_t t = 0; t < tap_group; ++t) sums[t] += simd::lane_sum<T>(acc[t]);
  }
  for (int64_t n = 0; n < seq && vector_cols < width; ++n) {  // columns after the last vector
    TapSpan s = taps_inside(n, seq, taps);
    for (int64_t j = std::max(j0, s.first); j < std::min(j0 + tap_group, s.last); ++j)
      for (int64_t c = vector_cols; c < width; ++c)
        tail[j - j0] += dy[n * width + c] * x[(n + j - half) * width + c];
  }
  for (int64_t t = 0; t < tap_group; ++t) sums[t] += tail[t];
}

// sums[j] = sum_n dy[n] . x[n + j - K/2] for every tap j of one sequence.
template <typename T>
void tap_dots(const T* x, const T* dy, T* sums, int64_t seq, int64_t width, int64_t taps) {
  for (int64_t j0 = 0; j0 < taps; j0 += tap_group) {
    T group[tap_group] = {};
    tap_dots_group(x, dy, group, seq, width, taps, j0);
    for (int64_t j = j0; j < std::min(taps, j0 + tap_group); ++j) sums[j] = group[j - j0];
  }
}

}  // namespace

// x of one sequence with its padded rows read as 0: x itself when nothing is padded, else
// a copy in `scratch` (one sequence, cache-resident: no whole-tensor mask_seq pass).
template <typename T>
const T* masked_rows(const T* x, const unsigned char* keep, int64_t seq, int64_t width, T* scratch) {
  if (!keep) return x;
  for (int64_t n = 0; n < seq; ++n) {
    if (keep[n]) std::copy(x + n * width, x + (n + 1) * width, scratch + n * width);
    else std::fill(scratch + n * width, scratch + (n + 1) * width, T(0));
  }
  return scratch;
}

void depthwise_conv_seq(const Tensor& x, const Tensor& w, const Tensor& key_mask, bool accumulate,
                        Tensor& y) {
  int64_t batch = x.dim(0), heads = x.dim(1), seq = x.dim(2), width = x.dim(3);
  int64_t taps = w.dim(1);
  KeyMaskBytes masks(key_mask, seq);
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    const T* wp = w.data<T>();
    T* yp = y.data<T>();
    parallel_for(batch * heads, 1, [&](int64_t begin, int64_t end) {
      // Scratch from lra's allocator, so it counts in the peak bytes.
      Tensor scratch = key_mask.defined() ? Tensor::empty(Shape{seq, width}, x.dtype()) : Tensor();
      for (int64_t bh = begin; bh < end; ++bh) {
        int64_t off = bh * seq * width;
        const unsigned char* keep = masks.of(bh / heads);
        const T* in = masked_rows(xp + off, keep, seq, width, keep ? scratch.data<T>() : nullptr);
        conv_sequence(in, wp + (bh % heads) * taps, ConvOut<T>{yp + off, accumulate, nullptr}, seq,
                      width, taps);
      }
    });
  });
}

void depthwise_conv_seq_backward(const Tensor& x, const Tensor& w, const Tensor& dy,
                                 const Tensor& key_mask, bool accumulate, Tensor& dx, Tensor& dw) {
  int64_t batch = x.dim(0), heads = x.dim(1), seq = x.dim(2), width = x.dim(3);
  int64_t taps = w.dim(1);
  KeyMaskBytes masks(key_mask, seq);
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* xp = x.data<T>();
    const T* gp = dy.data<T>();
    T* dxp = dx.data<T>();
    // dx[m] = sum_j w[j] dy[m - (j - K/2)] = the conv of dy with the taps reversed (then
    // 0 at padded rows); dw[j] = sum_n dy[n] . x'[n + j - K/2] with x' the masked x.
    std::vector<T> reversed(static_cast<std::size_t>(heads * taps));
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t j = 0; j < taps; ++j)
        reversed[static_cast<std::size_t>(h * taps + j)] = w.data<T>()[h * taps + taps - 1 - j];
    std::vector<T> partial(static_cast<std::size_t>(batch * heads * taps), T(0));
    parallel_for(batch * heads, 1, [&](int64_t begin, int64_t end) {
      Tensor scratch = key_mask.defined() ? Tensor::empty(Shape{seq, width}, x.dtype()) : Tensor();
      for (int64_t bh = begin; bh < end; ++bh) {
        int64_t off = bh * seq * width;
        const unsigned char* keep = masks.of(bh / heads);
        conv_sequence(gp + off, reversed.data() + (bh % heads) * taps,
                      ConvOut<T>{dxp + off, accumulate, keep}, seq, width, taps);
        const T* in = masked_rows(xp + off, keep, seq, width, keep ? scratch.data<T>() : nullptr);
        tap_dots(in, gp + off, partial.data() + bh * taps, seq, width, taps);
      }
    });
    // dw[h, j] (+)= sum over sequences in batch order (deterministic).
    T* dwp = dw.data<T>();
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t j = 0; j < taps; ++j) {
        T total = 0;
        for (int64_t b = 0; b < batch; ++b)
          total += partial[static_cast<std::size_t>((b * heads + h) * taps + j)];
        dwp[h * taps + j] = accumulate ? dwp[h * taps + j] + total : total;
      }
  });
}

}  // namespace lra::core::cpu
