// Batched GEMM on Eigen maps. Eigen's own threading is off (EIGEN_DONT_PARALLELIZE,
// because its blocking depends on the thread count); we split the work into
// (batch, row-block) items whose boundaries depend only on the sizes, so results are
// bit-identical for any thread count.
#include <Eigen/Core>
#include <algorithm>

#include "core/cpu/kernels.h"
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

}  // namespace

void gemm(const Tensor& a, bool ta, const Tensor& b, bool tb, Tensor& c, double alpha, double beta,
          int64_t m, int64_t n, int64_t k, int64_t pa, int64_t pb, int64_t pc) {
  LRA_DISPATCH_FLOAT(c.dtype(), T, [&] {
    const T* ap = a.data<T>();
    const T* bp = b.data<T>();
    T* cp = c.data<T>();
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
