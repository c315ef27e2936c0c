#pragma once
// One machine vector as a GCC vector extension (GCC and Clang): the widest the build
// targets (-march=native), so register-tiled kernels stay portable across SIMD widths.
// Files using it are built with -ffp-contract=fast (core/CMakeLists.txt) so that
// `acc += s * v` is one fused multiply-add (ISO C++ mode turns contraction off).
#include <cstring>

namespace lra::core::cpu::simd {

#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
constexpr int kRegisters = 32;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
constexpr int kRegisters = 16;
#else
constexpr int kVectorBytes = 16;
constexpr int kRegisters = 16;
#endif

template <typename T> struct VecOf;
template <> struct VecOf<float> {
  typedef float type __attribute__((vector_size(kVectorBytes)));
};
template <> struct VecOf<double> {
  typedef double type __attribute__((vector_size(kVectorBytes)));
};
template <typename T> using Vec = typename VecOf<T>::type;
template <typename T> constexpr int kLanes = kVectorBytes / static_cast<int>(sizeof(T));

// Unaligned load and store of one vector.
template <typename T> inline Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T> inline void store(T* p, const Vec<T>& v) { std::memcpy(p, &v, sizeof v); }

// Sum of the lanes in lane order (a fixed order: the same bits for any thread count).
template <typename T> inline T lane_sum(const Vec<T>& v) {
  T total = 0;
  for (int l = 0; l < kLanes<T>; ++l) total += v[l];
  return total;
}

}  // namespace lra::core::cpu::simd
