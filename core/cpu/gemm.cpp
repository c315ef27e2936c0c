// Batched GEMM: thin products (one size small, every attention shape) on the register-
// tiled kernel of thin_gemm.h, the rest on Eigen maps. Eigen's own threading is off
// (EIGEN_DONT_PARALLELIZE, because its blocking depends on the thread count); we split
// the work into (batch, row-block) items whose boundaries depend only on the sizes, so
// results are bit-identical for any thread count.
#include <Eigen/Core>
#include <algorithm>

#include "core/cpu/kernels.h"
#include "core/cpu/thin_gemm.h"
#include "core/dispatch.h"
#include "core/parallel.h"

namespace lra::core::cpu {
namespace {

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Stride = Eigen::OuterStride<>;
template <typename T> using ConstMap = Eigen::Map<const RowMatrix<T>, 0, Stride>;
template <typename T> using MutMap = Eigen::Map<RowMatrix<T>, 0, Stride>;

// Rows [r0, r1) of c = alpha op(a) op(b) + beta c, with a, b, c full matrices of one batch.
template <typename T>
void gemm_rows(const T* a, bool ta, const T* b, bool tb, T* c, int64_t m, int64_t n, int64_t k,
               int64_t r0, int64_t r1, T alpha, T beta) {
  int64_t rows = r1 - r0;
  // op(a) rows r0..r1: a is [m, k] (rows contiguous) or [k, m] (columns r0..r1).
  const T* a_block = ta ? a + r0 : a + r0 * k;
  ConstMap<T> am(a_block, ta ? k : rows, ta ? rows : k, Stride(ta ? m : k));
  ConstMap<T> bm(b, tb ? n : k, tb ? k : n, Stride(tb ? k : n));
  MutMap<T> cm(c + r0 * n, rows, n, Stride(n));
  auto run = [&](const auto& lhs, const auto& rhs) {
    if (beta == T(0)) {
      cm.noalias() = alpha * (lhs * rhs);  // never reads c: garbage/NaN in c is ignored
    } else {
      if (beta != T(1)) cm *= beta;
      cm.noalias() += alpha * (lhs * rhs);
    }
  };
  if (!ta && !tb) run(am, bm);
  else if (ta && !tb) run(am.transpose(), bm);
  else if (!ta && tb) run(am, bm.transpose());
  else run(am.transpose(), bm.transpose());
}

template <typename T>
void gemm_thin(const T* ap, bool ta, const T* bp, bool tb, T* cp, T alpha, T beta, int64_t m,
               int64_t n, int64_t k, int64_t pa, int64_t pb, int64_t pc) {
  int64_t p = std::max({pa, pb, pc});
  auto at = [&](int64_t i) { return ap + (pa == 1 ? 0 : i * m * k); };
  auto bt = [&](int64_t i) { return bp + (pb == 1 ? 0 : i * k * n); };
  // Row blocks of about 2^20 multiply-adds, whole tiles: no packing is repeated per
  // block, so small blocks cost nothing but keep both threads busy for p = 1 or 2.
  int64_t tile = thin_gemm_tile_rows();
  int64_t block = std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(1, n * k));
  // With Aᵀ stored, the kernel copies blocks of thin_gemm_pack_rows() rows; smaller row
  // blocks would read A across k pages per tile.
  if (ta) block = std::max<int64_t>(block, thin_gemm_pack_rows());
  block = (block + tile - 1) / tile * tile;
  int64_t row_blocks = (m + block - 1) / block;
  if (pc == 1 && p > 1) {
    // One output summed over the batch (weight gradients): each row block sums the batch
    // in order, row blocks run in parallel.
    parallel_for(row_blocks, 1, [&](int64_t begin, int64_t end) {
      ThinPanel<T> panel;
      for (int64_t rb = begin; rb < end; ++rb) {
        int64_t r0 = rb * block, r1 = std::min(m, r0 + block);
        for (int64_t i = 0; i < p; ++i) {
          if (i == 0 || pb > 1) thin_prepare_panel(bt(i), tb, m, k, n, panel);
          thin_gemm_rows(at(i), ta, panel, cp, m, n, k, r0, r1, alpha, i == 0 ? beta : T(1));
        }
      }
    });
    return;
  }
  if (p >= 8) {
    // Enough matrices to share out whole: each item lays out its own op(B), which stays
    // in cache for the product that follows.
    int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, m * n * k));
    parallel_for(p, grain, [&](int64_t begin, int64_t end) {
      ThinPanel<T> panel;
      for (int64_t i = begin; i < end; ++i) {
        if (i == begin || pb > 1) thin_prepare_panel(bt(i), tb, m, k, n, panel);
        thin_gemm_rows(at(i), ta, panel, cp + i * m * n, m, n, k, 0, m, alpha, beta);
      }
    });
    return;
  }
  // Few matrices: op(B) laid out once per matrix, then row blocks in parallel.
  std::vector<ThinPanel<T>> panels(static_cast<std::size_t>(pb));
  for (int64_t i = 0; i < pb; ++i)
    thin_prepare_panel(bt(i), tb, m, k, n, panels[static_cast<std::size_t>(i)]);
  int64_t item_work = std::max<int64_t>(1, std::min(block, m) * n * k);
  int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / item_work);
  parallel_for(p * row_blocks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      int64_t i = item / row_blocks, rb = item % row_blocks;
      int64_t r0 = rb * block, r1 = std::min(m, r0 + block);
      thin_gemm_rows(at(i), ta, panels[static_cast<std::size_t>(pb == 1 ? 0 : i)],
                     cp + i * m * n, m, n, k, r0, r1, alpha, beta);
    }
  });
}

}  // namespace

void gemm(const Tensor& a, bool ta, const Tensor& b, bool tb, Tensor& c, double alpha, double beta,
          int64_t m, int64_t n, int64_t k, int64_t pa, int64_t pb, int64_t pc) {
  LRA_DISPATCH_FLOAT(c.dtype(), T, [&] {
    const T* ap = a.data<T>();
    const T* bp = b.data<T>();
    T* cp = c.data<T>();
    if (thin_gemm_suits(m, n, k)) {
      gemm_thin<T>(ap, ta, bp, tb, cp, static_cast<T>(alpha), static_cast<T>(beta), m, n, k, pa,
                   pb, pc);
      return;
    }
    int64_t p = std::max({pa, pb, pc});
    auto at = [&](int64_t i) { return ap + (pa == 1 ? 0 : i * m * k); };
    auto bt = [&](int64_t i) { return bp + (pb == 1 ? 0 : i * k * n); };
    // Row blocks of about 2^21 multiply-adds (at least 32 rows): a size-only split. A
    // batch of 8 or more already gives the threads enough items, and splitting rows
    // would pack the right-hand matrix once per block.
    int64_t per_row = std::max<int64_t>(1, n * k);
    int64_t block = p >= 8 ? m
                           : std::max<int64_t>(32, ((int64_t{1} << 21) / per_row + 31) / 32 * 32);
    block = std::max<int64_t>(block, 1);
    int64_t row_blocks = (m + block - 1) / block;
    if (pc == 1 && p > 1) {
      // One output summed over the batch (weight gradients): each row block sums the
      // batch in order, row blocks run in parallel.
      parallel_for(row_blocks, 1, [&](int64_t begin, int64_t end) {
        for (int64_t rb = begin; rb < end; ++rb) {
          int64_t r0 = rb * block, r1 = std::min(m, r0 + block);
          for (int64_t i = 0; i < p; ++i)
            gemm_rows<T>(at(i), ta, bt(i), tb, cp, m, n, k, r0, r1, static_cast<T>(alpha),
                         i == 0 ? static_cast<T>(beta) : T(1));
        }
      });
      return;
    }
    // Small items are grouped (about 2^18 multiply-adds per chunk) so tiny GEMMs do not
    // pay for a parallel region; the grouping depends only on the sizes.
    int64_t item_work = std::max<int64_t>(1, std::min(block, m) * n * k);
    int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / item_work);
    parallel_for(p * row_blocks, grain, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        int64_t i = item / row_blocks, rb = item % row_blocks;
        int64_t r0 = rb * block, r1 = std::min(m, r0 + block);
        gemm_rows<T>(at(i), ta, bt(i), tb, cp + i * m * n, m, n, k, r0, r1,
                     static_cast<T>(alpha), static_cast<T>(beta));
      }
    });
  });
}

}  // namespace lra::core::cpu
