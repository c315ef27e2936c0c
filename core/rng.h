#pragma once
// Counter-based random numbers (Philox4x32-10). Element i of a fill with (seed, offset)
// is a pure function of (seed, offset + i): the stream is the same for any thread count
// and, later, on the GPU.
#include <array>
#include <cstdint>

#include "core/tensor.h"

namespace lra::core {

// One Philox4x32-10 block: four 32-bit words from a 128-bit counter and a 64-bit key.
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// Uniform in [lo, hi) for element offset + i.
void fill_uniform(Tensor& t, uint64_t seed, uint64_t offset, double lo = 0.0, double hi = 1.0);
// Normal(mean, std) for element offset + i (Box-Muller on one Philox block per pair).
void fill_normal(Tensor& t, uint64_t seed, uint64_t offset, double mean = 0.0, double std = 1.0);

// SplitMix64 finaliser: decorrelates derived seeds (seed ^ layer, seed + step, ...)
// before they key the Philox stream.
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A seeded stream that advances its offset by the number of values drawn.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0, uint64_t offset = 0) : seed_(seed), offset_(offset) {}
  void uniform(Tensor& t, double lo = 0.0, double hi = 1.0);
  void normal(Tensor& t, double mean = 0.0, double std = 1.0);
  // A scalar uniform in [0, 1) (advances by one).
  double uniform_scalar();
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t offset) { offset_ = offset; }

 private:
  uint64_t seed_;
  uint64_t offset_;
};

}  // namespace lra::core
