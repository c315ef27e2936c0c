#include "core/rng.h"

#include <cmath>

#include "core/parallel.h"
#include "core/philox.h"
#ifdef LRA_WITH_CUDA
#include "core/cuda/kernels.h"
#endif

namespace lra::core {

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  philox::Block b = philox::philox4x32_10(c[0], c[1], c[2], c[3], k[0], k[1]);
  return {b.v[0], b.v[1], b.v[2], b.v[3]};
}

namespace {

using philox::normal_tag;
using philox::uniform_tag;

std::array<uint32_t, 4> block(uint64_t seed, uint64_t index, uint32_t tag) {
  philox::Block b = philox::stream_block(seed, index, tag);
  return {b.v[0], b.v[1], b.v[2], b.v[3]};
}

// 32 random bits to a double in (0, 1).
double open_unit(uint32_t x) { return (static_cast<double>(x) + 0.5) * 0x1p-32; }

template <typename T>
void uniform_impl(T* out, int64_t n, uint64_t seed, uint64_t offset, double lo, double hi) {
  parallel_for(n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      uint64_t j = offset + static_cast<uint64_t>(i);
      uint32_t bits = block(seed, j / 4, uniform_tag)[j % 4];
      // 2^-32 steps keep the value strictly below 1 in double; clamp for the f32 rounding.
      double u = static_cast<double>(bits) * 0x1p-32;
      T v = static_cast<T>(lo + (hi - lo) * u);
      if (v >= static_cast<T>(hi)) v = std::nextafter(static_cast<T>(hi), static_cast<T>(lo));
      out[i] = v;
    }
  });
}

template <typename T>
void normal_impl(T* out, int64_t n, uint64_t seed, uint64_t offset, double mean, double stddev) {
  parallel_for(n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      uint64_t j = offset + static_cast<uint64_t>(i);
      auto b = block(seed, j / 2, normal_tag);
      double radius = std::sqrt(-2.0 * std::log(open_unit(b[0])));
      double angle = 2.0 * M_PI * open_unit(b[1]);
      double z = (j % 2 == 0) ? radius * std::cos(angle) : radius * std::sin(angle);
      out[i] = static_cast<T>(mean + stddev * z);
    }
  });
}

}  // namespace

void fill_uniform(Tensor& t, uint64_t seed, uint64_t offset, double lo, double hi) {
  if (t.dtype() == DType::bf16) {  // drawn in f32 (the same draws), then rounded once
    Tensor wide = Tensor::empty(t.shape(), DType::f32, t.device());
    fill_uniform(wide, seed, offset, lo, hi);
    t.copy_from(wide);
    return;
  }
#ifdef LRA_WITH_CUDA
  if (t.device() == Device::cuda) return cuda::fill_uniform(t, seed, offset, lo, hi);
#endif
  check_cpu(t, "fill_uniform");
  if (t.dtype() == DType::f32)
    uniform_impl(t.data<float>(), t.numel(), seed, offset, lo, hi);
  else
    uniform_impl(t.data<double>(), t.numel(), seed, offset, lo, hi);
}

void fill_normal(Tensor& t, uint64_t seed, uint64_t offset, double mean, double stddev) {
  if (t.dtype() == DType::bf16) {  // drawn in f32 (the same draws), then rounded once
    Tensor wide = Tensor::empty(t.shape(), DType::f32, t.device());
    fill_normal(wide, seed, offset, mean, stddev);
    t.copy_from(wide);
    return;
  }
#ifdef LRA_WITH_CUDA
  if (t.device() == Device::cuda) return cuda::fill_normal(t, seed, offset, mean, stddev);
#endif
  check_cpu(t, "fill_normal");
  if (t.dtype() == DType::f32)
    normal_impl(t.data<float>(), t.numel(), seed, offset, mean, stddev);
  else
    normal_impl(t.data<double>(), t.numel(), seed, offset, mean, stddev);
}

void Rng::uniform(Tensor& t, double lo, double hi) {
  fill_uniform(t, seed_, offset_, lo, hi);
  offset_ += static_cast<uint64_t>(t.numel());
}

void Rng::normal(Tensor& t, double mean, double stddev) {
  fill_normal(t, seed_, offset_, mean, stddev);
  offset_ += static_cast<uint64_t>(t.numel());
}

double Rng::uniform_scalar() {
  uint64_t j = offset_++;
  return static_cast<double>(block(seed_, j / 4, uniform_tag)[j % 4]) * 0x1p-32;
}

}  // namespace lra::core
