// Register-tiled thin GEMM (see thin_gemm.h). A tile of R rows x V vectors of C lives in
// registers while k runs: per k, V loads of an op(B) row and R broadcasts of op(A)
// elements feed R * V fused multiply-adds. Built with -ffp-contract=fast (core/CMakeLists.txt)
// so `acc += s * b` is one FMA; core/cpu/simd.h keeps it portable across SIMD widths.
#include "core/cpu/thin_gemm.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "core/cpu/simd.h"

namespace lra::core::cpu {
namespace {

using simd::kLanes;
using simd::load;
using simd::store;
using simd::Vec;

// Rows of the C tile: R x 2 accumulators + 2 op(B) vectors + 1 broadcast fit the registers.
constexpr int kTileRows = simd::kRegisters == 32 ? 12 : simd::kVectorBytes == 32 ? 6 : 4;
constexpr int kTileVectors = 2;
// Rows of a transposed A copied into one contiguous run per k (see thin_gemm_rows).
constexpr int64_t kPackRows = 8 * kTileRows;

// One R x V-vector tile of C over the whole k range. op(A)(r, p) of the tile is
// a[r + p * lda] when TransA (rows of A are k) and a[r * lda + p] otherwise; `b` points at
// the tile's first column of panel row 0. `cols` (<= V * lanes) columns of C are written.
// The layout is a template parameter so the row offsets are constants or hoisted
// pointers, not per-k multiplications that spill registers.
template <typename T, bool TransA, int R, int V>
void tile(const T* a, int64_t lda, const T* b, int64_t ldb, int64_t k, T* c, int64_t ldc,
          int64_t cols, T alpha, T beta) {
  constexpr int L = kLanes<T>;
  Vec<T> acc[R][V];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = Vec<T>{};
  const T* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = TransA ? a + r : a + r * lda;
  for (int64_t p = 0; p < k; ++p) {
    Vec<T> bv[V];
    const T* brow = b + p * ldb;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) bv[v] = load<T>(brow + v * L);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      T s = TransA ? a[p * lda + r] : rows[r][p];
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] += s * bv[v];
    }
  }
  for (int r = 0; r < R; ++r) {
    T* crow = c + r * ldc;
    for (int v = 0; v < V; ++v) {
      int64_t c0 = int64_t{v} * L;
      if (c0 + L <= cols) {
        Vec<T> out = alpha * acc[r][v];
        if (beta != T(0)) out += beta * load<T>(crow + c0);  // beta == 0: c is never read
        store<T>(crow + c0, out);
      } else {
        // Partial vector: through a buffer, so acc is never indexed by a runtime lane
        // (which would force the accumulators into memory).
        T part[L];
        store<T>(part, acc[r][v]);
        for (int64_t j = c0; j < cols; ++j) {
          T out = alpha * part[j - c0];
          crow[j] = beta != T(0) ? out + beta * crow[j] : out;
        }
      }
    }
  }
}

template <typename T>
using TileFn = void (*)(const T*, int64_t, const T*, int64_t, int64_t, T*, int64_t, int64_t, T,
                        T);

// kernels[(rows - 1) * kTileVectors + (vectors - 1)]
template <typename T, bool TransA, std::size_t... I>
constexpr auto make_tile_table(std::index_sequence<I...>) {
  return std::array<TileFn<T>, sizeof...(I)>{
      &tile<T, TransA, static_cast<int>(I) / kTileVectors + 1,
            static_cast<int>(I) % kTileVectors + 1>...};
}
template <typename T, bool TransA>
constexpr auto kTiles =
    make_tile_table<T, TransA>(std::make_index_sequence<kTileRows * kTileVectors>{});

}  // namespace

int thin_gemm_tile_rows() { return kTileRows; }
int thin_gemm_pack_rows() { return kPackRows; }

template <typename T>
void thin_prepare_panel(const T* b, bool trans_b, int64_t m, int64_t k, int64_t n,
                        ThinPanel<T>& panel) {
  constexpr int L = kLanes<T>;
  constexpr int64_t width = int64_t{kTileVectors} * L;
  bool direct = !trans_b && n % L == 0 && (n <= width || m < 2 * kTileRows);
  if (direct) {
    panel.data = b;
    panel.ld = n;
    panel.block_stride = width;
    return;
  }
  int64_t blocks = (n + width - 1) / width;
  panel.storage.assign(static_cast<std::size_t>(blocks * k * width), T(0));
  T* dst = panel.storage.data();
  for (int64_t blk = 0; blk < blocks; ++blk) {
    int64_t j0 = blk * width, cols = std::min(width, n - j0);
    T* out = dst + blk * k * width;
    if (trans_b) {
      // b is [n, k]: row j of b becomes column j of the panel.
      for (int64_t j = 0; j < cols; ++j) {
        const T* brow = b + (j0 + j) * k;
        for (int64_t p = 0; p < k; ++p) out[p * width + j] = brow[p];
      }
    } else {
      for (int64_t p = 0; p < k; ++p)
        std::memcpy(out + p * width, b + p * n + j0, static_cast<std::size_t>(cols) * sizeof(T));
    }
  }
  panel.data = dst;
  panel.ld = width;
  panel.block_stride = k * width;
}

template <typename T>
void thin_gemm_rows(const T* a, bool trans_a, const ThinPanel<T>& panel, T* c, int64_t m,
                    int64_t n, int64_t k, int64_t r0, int64_t r1, T alpha, T beta) {
  constexpr int L = kLanes<T>;
  int64_t vectors = (n + L - 1) / L;
  // Rows of Aᵀ are m apart: with m large every k step of a tile touches another page.
  // Such A is copied a block of rows at a time into [k, kPackRows] (one contiguous run
  // per k), then read with leading dimension kPackRows.
  bool pack = trans_a && m > 2 * kPackRows && r1 - r0 > kTileRows;
  thread_local std::vector<T> packed;
  for (int64_t b0 = r0; b0 < r1; b0 += pack ? kPackRows : r1 - r0) {
    int64_t b1 = pack ? std::min(r1, b0 + kPackRows) : r1;
    const T* ablock;
    int64_t lda;
    if (pack) {
      packed.resize(static_cast<std::size_t>(k * kPackRows));
      int64_t width = b1 - b0;
      for (int64_t p = 0; p < k; ++p)
        std::memcpy(packed.data() + p * kPackRows, a + p * m + b0,
                    static_cast<std::size_t>(width) * sizeof(T));
      ablock = packed.data();
      lda = kPackRows;
    } else {
      ablock = trans_a ? a + b0 : a + b0 * k;
      lda = trans_a ? m : k;
    }
    const auto& tiles = trans_a ? kTiles<T, true> : kTiles<T, false>;
    auto run = [&](int64_t i0, int64_t v0) {
      int rows = static_cast<int>(std::min<int64_t>(kTileRows, b1 - i0));
      int nv = static_cast<int>(std::min<int64_t>(kTileVectors, vectors - v0));
      int64_t c0 = v0 * L;
      int64_t cols = std::min<int64_t>(n - c0, int64_t{nv} * L);
      int64_t local = i0 - b0;
      tiles[static_cast<std::size_t>((rows - 1) * kTileVectors + (nv - 1))](
          ablock + (trans_a ? local : local * k), lda,
          panel.data + (v0 / kTileVectors) * panel.block_stride, panel.ld, k,
          c + i0 * n + c0, n, cols, alpha, beta);
    };
    // A row tile stays in registers and L1 while the column blocks of op(B) go by.
    for (int64_t i0 = b0; i0 < b1; i0 += kTileRows)
      for (int64_t v0 = 0; v0 < vectors; v0 += kTileVectors) run(i0, v0);
  }
}

template void thin_prepare_panel<float>(const float*, bool, int64_t, int64_t, int64_t,
                                        ThinPanel<float>&);
template void thin_prepare_panel<double>(const double*, bool, int64_t, int64_t, int64_t,
                                         ThinPanel<double>&);
template void thin_gemm_rows<float>(const float*, bool, const ThinPanel<float>&, float*, int64_t,
                                    int64_t, int64_t, int64_t, int64_t, float, float);
template void thin_gemm_rows<double>(const double*, bool, const ThinPanel<double>&, double*,
                                     int64_t, int64_t, int64_t, int64_t, int64_t, double, double);

}  // namespace lra::core::cpu
