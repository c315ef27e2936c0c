#pragma once
// mma.sync m16n8k16 with bf16 inputs and fp32 accumulation (sm_80 and later). Fragments,
// each .b32 register holding two bf16 (the lower column / row in the low half), with
// g = lane / 4 and t = lane % 4 (PTX ISA, "Matrix Fragments for mma.m16n8k16", .bf16):
//   A (16 x 16, row-major): reg 0 (g, 2t..2t+1), reg 1 (g + 8, 2t..2t+1),
//                           reg 2 (g, 2t+8..2t+9), reg 3 (g + 8, 2t+8..2t+9)
//   B (16 x 8, k x n):      reg 0 (2t..2t+1, g), reg 1 (2t+8..2t+9, g)
//   C, D (16 x 8):          c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1)
// so two C tiles side by side (columns 0-7 and 8-15) are, packed pairwise, one A fragment.
// The CPU emulation (tests/support/cuda_emulation.h) defines the same functions.
#include <cstdint>

#if defined(__CUDACC__)
namespace lra::core::cuda {

// Two floats rounded to bf16 (to nearest, ties to even), `lo` in the low half.
__device__ inline uint32_t pack_bf16x2(float lo, float hi) {
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

// d += A B for one warp's fragments.
__device__ inline void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

}  // namespace lra::core::cuda
#endif
