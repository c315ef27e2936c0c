#pragma once
// The one tensor-core instruction lra's kernels use: mma.sync m16n8k8 with TF32 inputs and
// fp32 accumulation (sm_80 and later). Fragments, with g = lane / 4 and t = lane % 4
// (PTX ISA, "Matrix Fragments for mma.m16n8k8", .tf32):
//   A (16 x 8, row-major): a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4)
//   B (8 x 8, k x n):      b0 (t, g), b1 (t + 4, g)
//   C, D (16 x 8):         c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1)
// The CPU emulation (tests/support/cuda_emulation.h) defines the same functions.
#include <cstdint>

#if defined(__CUDACC__)
namespace lra::core::cuda {

// fp32 -> tf32 (10-bit mantissa), rounded to nearest with ties away from zero.
__device__ inline uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}

// x rounded to TF32 and kept as a float: a tile rounded once when it is loaded into shared
// memory feeds every later fragment with a plain bit copy (tf32_bits) instead of a cvt.
__device__ inline float round_tf32(float x) { return __uint_as_float(to_tf32(x)); }
__device__ inline uint32_t tf32_bits(float rounded) { return __float_as_uint(rounded); }

// d += A B for one warp's fragments.
__device__ inline void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

}  // namespace lra::core::cuda
#endif
