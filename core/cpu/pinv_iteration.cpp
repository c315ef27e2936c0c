// The Nyström pseudo-inverse iteration (core::pinv_iterate) on the CPU: each thread takes
// whole matrices and runs every step of one matrix before the next, so its m x m operands
// stay in L1/L2 (6 x 16 KiB at m = 64) and a step is four register-tiled GEMMs with
// no thread barrier between them. Done as whole-batch ops instead, each step was seven
// parallel regions and three scaled copies streaming the whole batch through memory
// (the iteration's fwd + bwd per Nyström-64 layer at B = 32, H = 2, 2 threads: 15 ms ->
// 10.4 ms; 12.9 ms with pinv_init and the allocation of the saved steps).
// The arithmetic is that of the batched ops (the same scaled copies, and GEMMs with the
// same alpha/beta on the same kernel), so the results are the same bits.
#include <algorithm>

#include "core/cpu/attention_kernels.h"
#include "core/cpu/thin_gemm.h"
#include "core/ops_attention.h"
#include "core/dispatch.h"
#include "core/parallel.h"

namespace lra::core::cpu {
namespace {

// c = alpha op(a) op(b) + beta c for m x m matrices (beta == 0 never reads c).
template <typename T> struct SquareGemm {
  int64_t m;
  ThinPanel<T> panel;
  void operator()(const T* a, bool ta, const T* b, bool tb, T* c, T alpha, T beta) {
    thin_prepare_panel(b, tb, m, m, m, panel);
    thin_gemm_rows(a, ta, panel, c, m, m, m, 0, m, alpha, beta);
  }
};

template <typename T> void scaled_copy(const T* x, T alpha, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = alpha * x[i];
}

// Matrix `matrix` (of mm elements) of a batch, to read or to write.
template <typename T> const T* in(const Tensor& t, int64_t matrix, int64_t mm) {
  return t.data<T>() + matrix * mm;
}
template <typename T> T* out(Tensor& t, int64_t matrix, int64_t mm) {
  return t.data<T>() + matrix * mm;
}

}  // namespace

void pinv_iterate(const Tensor& a, const Tensor& z0, std::vector<PinvStep>& steps, Tensor& z) {
  int64_t m = a.dim(-1), mm = m * m;
  int64_t mats = mm ? a.numel() / mm : 0;
  int64_t iters = static_cast<int64_t>(steps.size());
  LRA_DISPATCH_FLOAT(a.dtype(), T, [&] {
    parallel_for(mats, 1, [&](int64_t begin, int64_t end) {
      SquareGemm<T> gemm{m, {}};
      for (int64_t i = begin; i < end; ++i) {
        const T* am = in<T>(a, i, mm);
        std::copy(in<T>(z0, i, mm), in<T>(z0, i, mm) + mm, out<T>(steps[0].z, i, mm));
        for (int64_t j = 0; j < iters; ++j) {
          PinvStep& s = steps[static_cast<std::size_t>(j)];
          T* zj = out<T>(s.z, i, mm);
          T* p = out<T>(s.p, i, mm);
          T* u1 = out<T>(s.u1, i, mm);
          T* u2 = out<T>(s.u2, i, mm);
          T* next = j + 1 < iters ? out<T>(steps[static_cast<std::size_t>(j + 1)].z, i, mm)
                                  : out<T>(z, i, mm);
          gemm(am, false, zj, false, p, T(1), T(0));  // P = A Z
          scaled_copy(p, T(7), u1, mm);                // U1 = 7P − P P
          gemm(p, false, p, false, u1, T(-1), T(1));
          scaled_copy(p, T(15), u2, mm);  // U2 = 15P − P U1
          gemm(p, false, u1, false, u2, T(-1), T(1));
          scaled_copy(zj, T(13.0 / 4.0), next, mm);  // Z' = 13/4 Z − 1/4 Z U2
          gemm(zj, false, u2, false, next, T(-0.25), T(1));
        }
      }
    });
  });
}

void pinv_iterate_backward(const Tensor& a, const std::vector<PinvStep>& steps, const Tensor& d_z,
                           Tensor& d_a, Tensor& d_z0) {
  int64_t m = a.dim(-1), mm = m * m;
  int64_t mats = mm ? a.numel() / mm : 0;
  LRA_DISPATCH_FLOAT(a.dtype(), T, [&] {
    parallel_for(mats, 1, [&](int64_t begin, int64_t end) {
      SquareGemm<T> gemm{m, {}};
      // Per-thread scratch for one matrix's gradients, from lra's allocator (counted).
      Tensor scratch = Tensor::empty(Shape{5, m, m}, a.dtype());
      T* buf = scratch.data<T>();
      for (int64_t i = begin; i < end; ++i) {
        const T* am = in<T>(a, i, mm);
        T* da = out<T>(d_a, i, mm);
        T *d_next = buf, *dz = buf + mm, *du2 = buf + 2 * mm, *dp = buf + 3 * mm, *du1 = buf + 4 * mm;
        std::copy(in<T>(d_z, i, mm), in<T>(d_z, i, mm) + mm, d_next);
        for (auto s = steps.rbegin(); s != steps.rend(); ++s) {
          const T* zj = in<T>(s->z, i, mm);
          const T* p = in<T>(s->p, i, mm);
          const T* u1 = in<T>(s->u1, i, mm);
          const T* u2 = in<T>(s->u2, i, mm);
          // Z' = 13/4 Z − 1/4 Z U2
          scaled_copy(d_next, T(13.0 / 4.0), dz, mm);
          gemm(d_next, false, u2, true, dz, T(-0.25), T(1));
          gemm(zj, true, d_next, false, du2, T(-0.25), T(0));
          // U2 = 15P − P U1
          scaled_copy(du2, T(15), dp, mm);
          gemm(du2, false, u1, true, dp, T(-1), T(1));
          gemm(p, true, du2, false, du1, T(-1), T(0));
          // U1 = 7P − P P
          for (int64_t e = 0; e < mm; ++e) dp[e] += T(7) * du1[e];
          gemm(du1, false, p, true, dp, T(-1), T(1));
          gemm(p, true, du1, false, dp, T(-1), T(1));
          // P = A Z
          gemm(dp, false, zj, true, da, T(1), T(1));
          gemm(am, true, dp, false, dz, T(1), T(1));
          std::swap(d_next, dz);
        }
        std::copy(d_next, d_next + mm, out<T>(d_z0, i, mm));
      }
    });
  });
}

}  // namespace lra::core::cpu
