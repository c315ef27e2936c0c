// Launches of the fused short-row score kernels (core/cuda/matmul_softmax_kernels.cuh).
//
// Traffic, in elements, for one matrix of r rows of c <= 256 scores, contraction and head
// dim d (Nyström's F: r = N, c = m landmarks; dy = g hᵀ with g, h of width d too):
//   forward   composed: GEMM reads r d + c d, writes r c; softmax reads r c, writes r c;
//                       2 launches, r (d + 3 c) + c d.
//             fused:    reads r d + c d, writes r c; 1 launch, r (d + c) + c d.
//   backward  composed: GEMM g hᵀ (r d + c d in, r c out), softmax_backward (2 r c in, r c
//                       out), GEMMs dS k (r c + c d in, r d out) and dSᵀ q (r c + r d in,
//                       c d out); 4 launches, r (6 c + 3 d) + 3 c d.
//             fused:    reads g, y, q (2 r d + r c) and h, k (2 c d), writes d_q (r d), and
//                       dk as `tiles` partials of c d each (tiles = r / BM rows per block),
//                       summed by a second kernel (tiles c d in, c d out); 2 launches (1 when
//                       tiles = 1), r (3 d + c) + (2 tiles + 3) c d.
//             or:       writes dS (r c) instead of partials and leaves q, dk = dSᵀ q by
//                       cuBLAS (r c + r d in, c d out); 2 launches, r (3 d + 3 c) + 3 c d.
// The partials are fewer bytes than dS (written and read back) when tiles d <= r, i.e. about
// when the head dim is at most BM (256 rows per block at c <= 32, 128 at c <= 64, 64 at
// c <= 128, 32 above): Nyström's F at m <= 64 with D = 64. At c = 256 (Linformer-256,
// Nyström-256) dS is fewer and dk goes to cuBLAS.
// The fused kernels multiply on FP32 (or FP64) FMA units, also when core/precision.h asks
// for TF32: 2 r c d flops forward, 6 r c d backward, i.e. 16 and 19 flops per byte at
// c = d = 64, about the H100's ratio of FP32 rate to bandwidth (67 TFLOP/s, 3.35 TB/s). The
// byte ratios below bound the gain in time from above; measure before relying on more.
// Nyström-64 at B = 8, H = 4, D = 64, N = 4096 in f32 (32 matrices; F is r = 4096, c = 64):
//   F forward   134.7 MB, 2 launches -> 67.6 MB, 1 launch
//   A forward   2.6 MB, 2 launches -> 1.6 MB, 1 launch (launch-bound)
//   F backward  303.6 MB, 4 launches -> 169.3 MB, 2 launches (dS instead: 202.9 MB)
// (B = softmax(Q̃ Kᵀ) has rows of N scores: it stays composed, 134.7 MB and 2 launches
// forward, 303.6 MB and 4 launches backward.)
#include "core/cuda/matmul_softmax.h"

#include <algorithm>
#include <cstdint>

#include "core/cuda/check.h"
#include "core/cuda/kernels.h"
#include "core/cuda/matmul_softmax_kernels.cuh"
#include "core/dispatch.h"
#include "core/error.h"

namespace lra::core::cuda {
namespace {

using namespace scores;

// Kernels above 48 KiB of dynamic shared memory must opt in, once per kernel (the size is a
// constant of each instantiation).
template <auto Kernel, typename... Args>
void launch(size_t smem, int64_t blocks, Args... args) {
  static const bool opted_in = [smem] {
    LRA_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
    return true;
  }();
  (void)opted_in;
  LRA_CHECK(blocks <= INT32_MAX, "matmul_softmax (cuda): {} thread blocks exceed the grid limit",
            blocks);
  Kernel<<<static_cast<unsigned>(blocks), block_threads, smem>>>(args...);
  LRA_CUDA_CHECK_LAUNCH();
}

bool fits(int64_t cols, DType dtype, bool backward) {
  if (cols < 1 || cols > max_cols) return false;
  size_t bytes = 0;
  LRA_DISPATCH_FLOAT(dtype, T, [&] {
    with_row_tile(cols, [&](auto nmax) {
      constexpr int NMAX = decltype(nmax)::value;
      bytes = backward ? backward_smem<T, NMAX>() : forward_smem<T, NMAX>();
    });
  });
  return bytes <= max_shared_bytes_per_block();
}

}  // namespace

bool matmul_softmax_fits(int64_t cols, DType dtype) { return fits(cols, dtype, false); }
bool softmax_scores_backward_fits(int64_t cols, DType dtype) { return fits(cols, dtype, true); }

void matmul_softmax(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& key_mask,
                    double scale, const ProductShape& s, Tensor& y) {
  const void* mask = key_mask.defined() ? key_mask.raw_data() : nullptr;
  const bool mask_f32 = key_mask.defined() && key_mask.dtype() == DType::f32;
  // The mask's batch is the product's leading dim: p / mats_per_mask is a product's mask row.
  const int64_t mats_per_mask = key_mask.defined() ? s.p / key_mask.dim(0) : 1;
  LRA_DISPATCH_FLOAT(y.dtype(), T, [&] {
    with_row_tile(s.n, [&](auto nmax) {
      constexpr int NMAX = decltype(nmax)::value;
      const Product prod{s.m, s.n, s.k, s.pa, s.pb, row_tiles<NMAX>(s.m), ta, tb};
      launch<matmul_softmax_kernel<T, NMAX>>(forward_smem<T, NMAX>(), s.p * prod.tiles,
                                             a.data<T>(), b.data<T>(), prod, mask, mask_f32,
                                             mats_per_mask, static_cast<T>(scale), y.data<T>());
    });
  });
}

void softmax_scores_backward(const Tensor& y, const Tensor& q, const Tensor& k, const Tensor& g,
                             const Tensor& h, double scale, Tensor& d_q, Tensor& d_k) {
  const int64_t r = y.dim(-2), c = y.dim(-1), d = q.dim(-1), e = g.dim(-1);
  const int64_t p = y.numel() / (r * c);
  LRA_DISPATCH_FLOAT(y.dtype(), T, [&] {
    with_row_tile(c, [&](auto nmax) {
      constexpr int NMAX = decltype(nmax)::value;
      const ScoreDims sd{r, c, d, e, row_tiles<NMAX>(r)};
      const size_t smem = backward_smem<T, NMAX>();
      const int64_t blocks = p * sd.tiles;
      auto run = [&](T* dk_part, T* ds_out) {
        launch<scores_backward_kernel<T, NMAX>>(smem, blocks, y.data<T>(), q.data<T>(),
                                                k.data<T>(), g.data<T>(), h.data<T>(), sd,
                                                static_cast<T>(scale), d_q.data<T>(), dk_part,
                                                ds_out);
      };
      const DkRoute route = dk_route(sd);
      if (route == DkRoute::direct) {  // the one tile's partial is dk
        run(d_k.data<T>(), nullptr);
      } else if (route == DkRoute::partials) {  // fewer bytes than dS (see the top)
        Tensor part = Tensor::empty(Shape{p * sd.tiles, c, d}, y.dtype(), y.device());
        run(part.data<T>(), nullptr);
        const int64_t total = p * c * d;
        const int64_t grid = std::min<int64_t>((total + block_threads - 1) / block_threads, 65535);
        sum_tiles_kernel<T><<<static_cast<unsigned>(grid), block_threads>>>(
            part.data<T>(), p, sd.tiles, c * d, d_k.data<T>());
        LRA_CUDA_CHECK_LAUNCH();
      } else {  // dS, then dk = dSᵀ q by cuBLAS
        Tensor ds = Tensor::empty(y.shape(), y.dtype(), y.device());
        run(nullptr, ds.data<T>());
        gemm(ds, true, q, false, d_k, 1.0, 0.0, c, d, r, p, p, p);
      }
    });
  });
}

}  // namespace lra::core::cuda
