#pragma once
// Shared helpers of the attention tests: random tensors, backend construction, and
// independent float64 references written with plain loops.
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "attention/attention.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace lra::test {

using attention::AttnShape;
using core::DType;
using core::Shape;
using core::Tensor;

// Tiny tensors: run single-threaded so a loaded CI machine does not spend the test's time
// in thread hand-offs (every kernel gives identical results for any thread count).
struct SingleThread {
  int saved = core::num_threads();
  SingleThread() { core::set_num_threads(1); }
  ~SingleThread() { core::set_num_threads(saved); }
  SingleThread(const SingleThread&) = delete;
  SingleThread& operator=(const SingleThread&) = delete;
};

inline Tensor randn(const Shape& shape, uint64_t seed, double scale = 1.0, DType dtype = DType::f64) {
  Tensor t = Tensor::empty(shape, dtype);
  core::fill_normal(t, seed, 0, 0.0, scale);
  return t;
}

// Key mask [B, N] with the first real[b] positions of sequence b set to 1.
inline Tensor prefix_mask(int64_t n, const std::vector<int64_t>& real, DType dtype = DType::f64) {
  std::vector<double> values;
  for (int64_t r : real)
    for (int64_t i = 0; i < n; ++i) values.push_back(i < r ? 1.0 : 0.0);
  return Tensor::from_values(Shape{static_cast<int64_t>(real.size()), n}, values, dtype);
}

inline std::unique_ptr<attention::Attention> make_backend(const std::string& yaml, const AttnShape& shape,
                                                          uint64_t seed = 7, DType dtype = DType::f64) {
  attention::AttentionOptions options;
  options.seed = seed;
  options.dtype = dtype;
  return attention::make_attention(YAML::Load(yaml), shape, options, "test spec");
}

inline bool mask_keep(const Tensor& mask, int64_t b, int64_t j) {
  return !mask.defined() || mask.at({b, j}) != 0.0;
}

// Exact masked softmax attention in f64 loops: [B, H, N, D].
// A copy of x ([B, H, N, D]) whose rows at padded positions (mask 0) hold sign * junk:
// the masking tests fill padded keys and values with garbage this way.
inline Tensor garble_padded_rows(const Tensor& x, const Tensor& mask, const Tensor& junk,
                                 double sign = 1.0) {
  Tensor out = x.clone();
  const int64_t B = x.dim(0), H = x.dim(1), N = x.dim(2), D = x.dim(3);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t j = 0; j < N; ++j)
        if (!mask_keep(mask, b, j))
          for (int64_t d = 0; d < D; ++d) {
            int64_t i = ((b * H + h) * N + j) * D + d;
            out.data<double>()[i] = sign * junk.data<double>()[i];
          }
  return out;
}

inline std::vector<double> naive_softmax_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                                   const Tensor& mask) {
  int64_t B = q.dim(0), H = q.dim(1), N = q.dim(2), D = q.dim(3);
  std::vector<double> out(static_cast<std::size_t>(B * H * N * D), 0.0);
  std::vector<double> w(static_cast<std::size_t>(N));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < N; ++i) {
        double mx = -INFINITY;
        for (int64_t j = 0; j < N; ++j) {
          double s = 0;
          for (int64_t d = 0; d < D; ++d) s += q.at({b, h, i, d}) * k.at({b, h, j, d});
          w[static_cast<std::size_t>(j)] = s / std::sqrt(static_cast<double>(D));
          if (mask_keep(mask, b, j)) mx = std::max(mx, w[static_cast<std::size_t>(j)]);
        }
        double tot = 0;
        for (int64_t j = 0; j < N; ++j) {
          double e = mask_keep(mask, b, j) ? std::exp(w[static_cast<std::size_t>(j)] - mx) : 0.0;
          w[static_cast<std::size_t>(j)] = e;
          tot += e;
        }
        for (int64_t j = 0; j < N; ++j)
          for (int64_t d = 0; d < D; ++d)
            out[static_cast<std::size_t>(((b * H + h) * N + i) * D + d)] +=
                tot > 0 ? w[static_cast<std::size_t>(j)] / tot * v.at({b, h, j, d}) : 0.0;
      }
  return out;
}

// max |a - b| over the rows of real queries (all rows without a mask).
inline double max_diff_real_rows(const std::vector<double>& a, const std::vector<double>& b,
                                 const Shape& shape, const Tensor& mask) {
  int64_t B = shape[0], H = shape[1], N = shape[2], D = shape[3];
  double worst = 0;
  for (int64_t bb = 0; bb < B; ++bb)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < N; ++i) {
        if (!mask_keep(mask, bb, i)) continue;
        for (int64_t d = 0; d < D; ++d) {
          auto idx = static_cast<std::size_t>(((bb * H + h) * N + i) * D + d);
          worst = std::max(worst, std::abs(a[idx] - b[idx]));
        }
      }
  return worst;
}

inline double rel_fro(const std::vector<double>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

}  // namespace lra::test
