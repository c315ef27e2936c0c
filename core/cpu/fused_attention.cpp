// Fused exact softmax attention on the CPU. A tile of query rows gets its full score rows
// (rows x N, sized to stay in L2), so the softmax of each row is exact in one pass with
// no running rescaling; the products go through the thin GEMM kernel directly. The
// backward recomputes each tile's probabilities from the saved log-sum-exp and
// accumulates dK and dV per (batch, head), so a (batch, head) is one work item there.
#include "core/cpu/fused_attention.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/cpu/thin_gemm.h"
#include "core/dispatch.h"
#include "core/parallel.h"
#include "core/philox.h"

namespace lra::core::cpu {
namespace {

template <typename T>
using Row = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
// Scratch comes from lra's allocator: counted in peak bytes like every tensor, and 64-byte
// aligned. The alignment matters for results: Eigen's vectorised sums over a Map take
// scalar steps up to the first aligned element, so a buffer at a varying address would
// sum in a varying order (results would depend on what the heap held before).
template <typename T>
T* scratch(Tensor& holder, int64_t elements) {
  holder = Tensor::empty(Shape{std::max<int64_t>(elements, 1)}, dtype_of<T>());
  return holder.data<T>();
}

// Query rows per tile: the tile's score rows take about 256 KiB, in whole register tiles.
// A function of the sizes only, so results do not depend on the thread count.
int64_t tile_rows(int64_t n, std::size_t elem) {
  int64_t unit = thin_gemm_tile_rows();
  int64_t rows = static_cast<int64_t>((256 * 1024) / elem) / std::max<int64_t>(n, 1);
  rows = std::clamp<int64_t>(rows / unit * unit, unit, 8 * unit);
  return rows;
}

// Key mask as bytes per batch (1 = token); empty when there is no mask.
std::vector<unsigned char> mask_bytes(const Tensor& key_mask) {
  std::vector<unsigned char> keep;
  if (!key_mask.defined()) return keep;
  keep.resize(static_cast<std::size_t>(key_mask.numel()));
  for (int64_t i = 0; i < key_mask.numel(); ++i)
    keep[static_cast<std::size_t>(i)] = key_mask.dtype() == DType::f32
                                            ? key_mask.data<float>()[i] != 0.0f
                                            : key_mask.data<double>()[i] != 0.0;
  return keep;
}

// Dropout multipliers of one score row whose first element has index `first` in the
// [B, H, N, N] order: the draws of core::dropout_mask (fill_uniform, then threshold), one
// Philox block per four elements.
template <typename T>
void dropout_row(const AttentionDropout& d, uint64_t first, int64_t n, T* keep) {
  const T thr = static_cast<T>(d.p), scale = static_cast<T>(1.0 / (1.0 - d.p));
  int64_t j = 0;
  while (j < n) {
    uint64_t e = d.offset + first + static_cast<uint64_t>(j);
    philox::Block b = philox::stream_block(d.seed, e / 4, philox::uniform_tag);
    for (uint64_t w = e % 4; w < 4 && j < n; ++w, ++j) {
      T u = static_cast<T>(static_cast<double>(b.v[w]) * 0x1p-32);
      if (u >= T(1)) u = std::nextafter(T(1), T(0));
      keep[j] = u < thr ? T(0) : scale;
    }
  }
}

// Per-(batch, head) layout helpers.
struct Dims {
  int64_t batch, heads, n, d;
};
Dims dims_of(const Tensor& q) { return {q.dim(0), q.dim(1), q.dim(2), q.dim(3)}; }

template <typename T>
void forward_impl(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                  double scale, const AttentionDropout& dropout, Tensor& out, Tensor& lse) {
  const Dims s = dims_of(q);
  const std::vector<unsigned char> mask = mask_bytes(key_mask);
  const int64_t rows = tile_rows(s.n, sizeof(T));
  const int64_t tiles = (s.n + rows - 1) / rows;
  const T* qp = q.data<T>();
  const T* kp = k.data<T>();
  const T* vp = v.data<T>();
  T* op = out.data<T>();
  T* lp = lse.data<T>();
  const bool drop = dropout.p > 0;
  // Items are (batch-head, tile); op(B) panels are laid out once per batch-head item run.
  parallel_for(s.batch * s.heads * tiles, 1, [&](int64_t begin, int64_t end) {
    Tensor scores_t, keep_t;
    T* scores = scratch<T>(scores_t, rows * s.n);
    T* keep = drop ? scratch<T>(keep_t, s.n) : nullptr;
    ThinPanel<T> kt, vpanel;
    int64_t panel_bh = -1;
    for (int64_t item = begin; item < end; ++item) {
      int64_t bh = item / tiles, i0 = (item % tiles) * rows, r = std::min(rows, s.n - i0);
      int64_t b = bh / s.heads;
      const T* q_bh = qp + bh * s.n * s.d;
      const T* k_bh = kp + bh * s.n * s.d;
      const T* v_bh = vp + bh * s.n * s.d;
      if (bh != panel_bh) {
        thin_prepare_panel(k_bh, true, rows, s.d, s.n, kt);       // Kᵀ: [D, N]
        thin_prepare_panel(v_bh, false, rows, s.n, s.d, vpanel);  // V: [N, D]
        panel_bh = bh;
      }
      T* sc = scores;
      thin_gemm_rows(q_bh + i0 * s.d, false, kt, sc, r, s.n, s.d, 0, r, static_cast<T>(scale), T(0));
      const unsigned char* km = mask.empty() ? nullptr : mask.data() + b * s.n;
      for (int64_t i = 0; i < r; ++i) {
        T* row = sc + i * s.n;
        Row<T> ra(row, s.n);
        T mx = -std::numeric_limits<T>::infinity();
        if (km) {
          for (int64_t j = 0; j < s.n; ++j)
            if (km[j]) mx = std::max(mx, row[j]);
        } else {
          mx = ra.maxCoeff();
        }
        T* lse_row = lp + bh * s.n + i0 + i;
        if (mx == -std::numeric_limits<T>::infinity()) {  // no real key: attends to nothing
          ra.setZero();
          *lse_row = mx;
          continue;
        }
        ra = (ra - mx).exp();
        if (km)
          for (int64_t j = 0; j < s.n; ++j)
            if (!km[j]) row[j] = T(0);
        T sum = ra.sum();
        ra *= T(1) / sum;
        *lse_row = mx + std::log(sum);
        if (drop) {
          dropout_row(dropout, static_cast<uint64_t>((bh * s.n + i0 + i) * s.n), s.n, keep);
          ra *= Row<T>(keep, s.n);
        }
      }
      thin_gemm_rows(sc, false, vpanel, op + bh * s.n * s.d + i0 * s.d, r, s.d, s.n, 0, r, T(1),
                     T(0));
    }
  });
}

template <typename T>
void backward_impl(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                   double scale, const AttentionDropout& dropout, const Tensor& lse,
                   const Tensor& out, const Tensor& d_out, Tensor& dq, Tensor& dk, Tensor& dv) {
  const Dims s = dims_of(q);
  const std::vector<unsigned char> mask = mask_bytes(key_mask);
  const int64_t rows = tile_rows(s.n, sizeof(T));
  const T* qp = q.data<T>();
  const T* kp = k.data<T>();
  const T* vp = v.data<T>();
  const T* lp = lse.data<T>();
  const T* gp = d_out.data<T>();
  const T* outp = out.data<T>();
  T* dqp = dq.data<T>();
  T* dkp = dk.data<T>();
  T* dvp = dv.data<T>();
  const bool drop = dropout.p > 0;
  const T sc_t = static_cast<T>(scale);
  // dK and dV of a (batch, head) are sums over its query tiles: one work item each.
  parallel_for(s.batch * s.heads, 1, [&](int64_t begin, int64_t end) {
    Tensor probs_t, grads_t, weights_t, keep_t;
    T* probs = scratch<T>(probs_t, rows * s.n);
    T* grads = scratch<T>(grads_t, rows * s.n);
    T* weights = drop ? scratch<T>(weights_t, rows * s.n) : nullptr;
    T* keep = drop ? scratch<T>(keep_t, rows * s.n) : nullptr;  // the tile's multipliers, drawn once
    ThinPanel<T> kt, vt, kpanel, gpanel, qpanel;
    for (int64_t bh = begin; bh < end; ++bh) {
      int64_t b = bh / s.heads;
      const T* q_bh = qp + bh * s.n * s.d;
      const T* k_bh = kp + bh * s.n * s.d;
      const T* v_bh = vp + bh * s.n * s.d;
      const T* g_bh = gp + bh * s.n * s.d;
      T* dk_bh = dkp + bh * s.n * s.d;
      T* dv_bh = dvp + bh * s.n * s.d;
      std::fill(dk_bh, dk_bh + s.n * s.d, T(0));
      std::fill(dv_bh, dv_bh + s.n * s.d, T(0));
      thin_prepare_panel(k_bh, true, rows, s.d, s.n, kt);       // Kᵀ: [D, N]
      thin_prepare_panel(v_bh, true, rows, s.d, s.n, vt);       // Vᵀ: [D, N]
      thin_prepare_panel(k_bh, false, rows, s.n, s.d, kpanel);  // K: [N, D]
      const unsigned char* km = mask.empty() ? nullptr : mask.data() + b * s.n;
      for (int64_t i0 = 0; i0 < s.n; i0 += rows) {
        int64_t r = std::min(rows, s.n - i0);
        T* pr = probs;
        T* gr = grads;
        T* wr = drop ? weights : pr;
        // P = exp(scale Q Kᵀ - lse) over real keys, as in the forward.
        thin_gemm_rows(q_bh + i0 * s.d, false, kt, pr, r, s.n, s.d, 0, r, sc_t, T(0));
        for (int64_t i = 0; i < r; ++i) {
          T* row = pr + i * s.n;
          Row<T> ra(row, s.n);
          T l = lp[bh * s.n + i0 + i];
          if (l == -std::numeric_limits<T>::infinity()) {
            ra.setZero();
          } else {
            ra = (ra - l).exp();
            if (km)
              for (int64_t j = 0; j < s.n; ++j)
                if (!km[j]) row[j] = T(0);
          }
          if (drop) {
            T* keep_row = keep + i * s.n;
            dropout_row(dropout, static_cast<uint64_t>((bh * s.n + i0 + i) * s.n), s.n, keep_row);
            Row<T>(wr + i * s.n, s.n) = ra * Row<T>(keep_row, s.n);
          }
        }
        // dV += Wᵀ dO_tile
        thin_prepare_panel(g_bh + i0 * s.d, false, s.n, r, s.d, gpanel);
        thin_gemm_rows(wr, true, gpanel, dv_bh, s.n, s.d, r, 0, s.n, T(1), T(1));
        // dW = dO_tile Vᵀ; dP = dW * keep; dS = scale P (dP - rowdot(P, dP)), where
        // rowdot(P, dP) = rowdot(W, dO Vᵀ) = dO · O: D products a row instead of N.
        thin_gemm_rows(g_bh + i0 * s.d, false, vt, gr, r, s.n, s.d, 0, r, T(1), T(0));
        for (int64_t i = 0; i < r; ++i) {
          Row<T> ga(gr + i * s.n, s.n);
          Row<T> pa(pr + i * s.n, s.n);
          if (drop) ga *= Row<T>(keep + i * s.n, s.n);
          const int64_t at = bh * s.n * s.d + (i0 + i) * s.d;
          T dot = T(0);
          for (int64_t t = 0; t < s.d; ++t) dot += g_bh[(i0 + i) * s.d + t] * outp[at + t];
          ga = sc_t * pa * (ga - dot);
        }
        // dQ_tile = dS K; dK += dSᵀ Q_tile
        thin_gemm_rows(gr, false, kpanel, dqp + bh * s.n * s.d + i0 * s.d, r, s.d, s.n, 0, r, T(1),
                       T(0));
        thin_prepare_panel(q_bh + i0 * s.d, false, s.n, r, s.d, qpanel);
        thin_gemm_rows(gr, true, qpanel, dk_bh, s.n, s.d, r, 0, s.n, T(1), T(1));
      }
    }
  });
}

}  // namespace

void fused_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                     double scale, const AttentionDropout& dropout, Tensor& out, Tensor& lse) {
  LRA_DISPATCH_FLOAT(q.dtype(), T,
                     [&] { forward_impl<T>(q, k, v, key_mask, scale, dropout, out, lse); });
}

void fused_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& key_mask, double scale,
                              const AttentionDropout& dropout, const Tensor& lse,
                              const Tensor& out, const Tensor& d_out, Tensor& dq, Tensor& dk,
                              Tensor& dv) {
  LRA_DISPATCH_FLOAT(q.dtype(), T, [&] {
    backward_impl<T>(q, k, v, key_mask, scale, dropout, lse, out, d_out, dq, dk, dv);
  });
}

}  // namespace lra::core::cpu
