#pragma once
// Philox4x32-10 as one inline function usable from host code and CUDA kernels, so the
// CPU and the GPU draw the same stream (see core/rng.h).
#include <cstdint>

#if defined(__CUDACC__)
#define LRA_HOST_DEVICE __host__ __device__
#else
#define LRA_HOST_DEVICE
#endif

namespace lra::core::philox {

struct Block {
  uint32_t v[4];
};

LRA_HOST_DEVICE inline Block philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                           uint32_t k0, uint32_t k1) {
  const uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
  const uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += w0;
      k1 += w1;
    }
    uint64_t p0 = static_cast<uint64_t>(m0) * c0;
    uint64_t p1 = static_cast<uint64_t>(m1) * c2;
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  return Block{{c0, c1, c2, c3}};
}

// Stream tags keep uniform and normal draws from reusing the same counters.
constexpr uint32_t uniform_tag = 0x554e4946u;  // "UNIF"
constexpr uint32_t normal_tag = 0x4e4f524du;   // "NORM"

// The 4 words of block `index` of stream (seed, tag).
LRA_HOST_DEVICE inline Block stream_block(uint64_t seed, uint64_t index, uint32_t tag) {
  return philox4x32_10(static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), tag, 0,
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

}  // namespace lra::core::philox
