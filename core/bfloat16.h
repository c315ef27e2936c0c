#pragma once
// bf16: the storage type of DType::bf16 (1 sign, 8 exponent, 7 mantissa bits: the top half
// of an IEEE float). lra computes in fp32 and only stores bf16, so this is a bit pattern
// with conversions, usable on the host, in CUDA device code and in the CPU emulation of
// that code. float -> bf16 rounds to nearest, ties to even (as __float2bfloat16_rn);
// NaN stays a quiet NaN; overflow rounds to infinity.
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define LRA_HOST_DEVICE __host__ __device__
#else
#define LRA_HOST_DEVICE
#endif

namespace lra::core {

struct bf16 {
  uint16_t bits = 0;
};
static_assert(sizeof(bf16) == 2);

LRA_HOST_DEVICE inline uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}

LRA_HOST_DEVICE inline float float_from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

LRA_HOST_DEVICE inline float to_float(bf16 x) { return float_from_bits(uint32_t{x.bits} << 16); }

LRA_HOST_DEVICE inline bf16 to_bf16(float x) {
  uint32_t u = float_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<uint16_t>((u >> 16) | 0x40u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{static_cast<uint16_t>(u >> 16)};
}

// double -> bf16 in one rounding. Rounding to float first is exact enough except when the
// float lands exactly on a bf16 midpoint: then the double's side of that midpoint decides
// (a float rounding never crosses a midpoint, which is itself a float).
LRA_HOST_DEVICE inline bf16 to_bf16(double x) {
  const float f = static_cast<float>(x);
  const uint32_t u = float_bits(f);
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  if (nan || (u & 0xffffu) != 0x8000u || static_cast<double>(f) == x) return to_bf16(f);
  const bool above = (x < 0 ? -x : x) > (f < 0 ? -static_cast<double>(f) : static_cast<double>(f));
  return bf16{static_cast<uint16_t>((u >> 16) + (above ? 1u : 0u))};  // magnitude up or down
}

// Two bf16 in one 32-bit word, `lo` in the low half: the operand packing of mma.sync.
LRA_HOST_DEVICE inline uint32_t pack_bf16(bf16 lo, bf16 hi) {
  return uint32_t{lo.bits} | (uint32_t{hi.bits} << 16);
}

}  // namespace lra::core
