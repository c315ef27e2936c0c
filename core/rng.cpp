#include "core/rng.h"

#include <cmath>

#include "core/parallel.h"

namespace lra::core {

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  constexpr uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
  constexpr uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k[0] += w0;
      k[1] += w1;
    }
    uint64_t p0 = static_cast<uint64_t>(m0) * c[0];
    uint64_t p1 = static_cast<uint64_t>(m1) * c[2];
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
  }
  return c;
}

namespace {

// Stream tags keep uniform and normal draws from reusing the same counters.
constexpr uint32_t uniform_tag = 0x554e4946u;  // "UNIF"
constexpr uint32_t normal_tag = 0x4e4f524du;   // "NORM"

std::array<uint32_t, 4> block(uint64_t seed, uint64_t index, uint32_t tag) {
  return philox4x32_10({static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), tag, 0},
                       {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
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
  check_cpu(t, "fill_uniform");
  if (t.dtype() == DType::f32)
    uniform_impl(t.data<float>(), t.numel(), seed, offset, lo, hi);
  else
    uniform_impl(t.data<double>(), t.numel(), seed, offset, lo, hi);
}

void fill_normal(Tensor& t, uint64_t seed, uint64_t offset, double mean, double stddev) {
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
