#pragma once
// Register-tiled GEMM for "thin" products, where one of the three sizes is small (the
// head dim, the landmark count, a feature count): the shapes of every attention backend.
// Eigen packs both operands into panels before multiplying; when one size is 32 or 64
// that packing costs about as much as the arithmetic. This kernel reads op(A) in place
// (any layout: it only broadcasts single elements) and needs op(B) as row-major rows,
// which is B itself when it is not transposed, so most products pack nothing.
//
// Each output element is one sequential sum over k (fused multiply-adds in order), so
// results do not depend on how rows are split between threads.
#include <cstdint>
#include <vector>

namespace lra::core::cpu {

// op(B) ([k, n]) as the kernel reads it: in column blocks as wide as one register tile;
// row p of block j starts at data + j * block_stride + p * ld, and whole SIMD vectors
// may be read (columns past n are zero when copied). Either B itself (block_stride = the
// tile width, ld = n) or a copy in `storage` with each block contiguous, so a tile's k
// steps read one run of memory instead of k rows on k different pages.
template <typename T>
struct ThinPanel {
  const T* data = nullptr;
  int64_t ld = 0, block_stride = 0;
  std::vector<T> storage;
};

// Lays out op(B) for thin_gemm_rows: b is [k, n] (trans_b false) or [n, k] (true); m is
// the row count of the product (a copy pays off only when many row tiles reuse it).
template <typename T>
void thin_prepare_panel(const T* b, bool trans_b, int64_t m, int64_t k, int64_t n,
                        ThinPanel<T>& panel);

// Rows [r0, r1) of c ([m, n], row-major, leading dim n) = alpha op(A) op(B) + beta c, with
// a = [m, k] (trans_a false) or [k, m] (true). beta == 0 never reads c.
template <typename T>
void thin_gemm_rows(const T* a, bool trans_a, const ThinPanel<T>& panel, T* c, int64_t m,
                    int64_t n, int64_t k, int64_t r0, int64_t r1, T alpha, T beta);

// Whether an m x n x k product belongs on this kernel: when a size is small enough that
// Eigen's packing costs about as much as the product. Its op(B) rows are re-read once per
// row tile, so a very long reduction (weight gradients over every token) stays with
// Eigen's k-blocking; fewer than 16 columns (matrix-vector products) would leave most
// SIMD lanes idle.
inline bool thin_gemm_suits(int64_t m, int64_t n, int64_t k) {
  return n >= 16 && k <= 8192 && ((m < n ? m : n) <= 256 || k <= 256);
}

// Row-block granularity of the kernel (rows per register tile).
int thin_gemm_tile_rows();
// Rows of a transposed A copied at a time (a multiple of the tile rows).
int thin_gemm_pack_rows();

}  // namespace lra::core::cpu
