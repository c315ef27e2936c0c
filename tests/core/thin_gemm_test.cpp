// The register-tiled thin GEMM path of the CPU gemm (core/cpu/thin_gemm.*), reached
// through core::gemm for shapes with >= 16 columns and one small size: every transpose,
// column counts that are not whole SIMD vectors, row counts that are not whole tiles,
// transposed A large enough to be copied in blocks, batch broadcast, batch-summed output,
// beta = 0 over NaN garbage, f32 and f64, against a float64 loop written here; and the
// same bits for any thread count.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/ops.h"
#include "core/parallel.h"
#include "core/rng.h"

namespace lra::core {
namespace {

std::vector<double> randn(int64_t count, uint64_t seed) {
  Tensor t = Tensor::empty(Shape{count}, DType::f64);
  fill_normal(t, seed, 0);
  return t.to_vector();
}

struct Case {
  int64_t pa, pb, m, n, k;  // pa/pb: batch counts (0 = a rank-2 operand)
  bool ta, tb;
};

// c = alpha op(a) op(b) + beta c in float64, c batched as max(pa, pb) (or 1 if sum_batch).
std::vector<double> reference(const Case& s, const std::vector<double>& a,
                              const std::vector<double>& b, const std::vector<double>& c0,
                              double alpha, double beta, bool sum_batch) {
  int64_t p = std::max<int64_t>({1, s.pa, s.pb});
  std::vector<double> c = c0;
  for (double& x : c) x *= beta;
  for (int64_t q = 0; q < p; ++q) {
    const double* ap = a.data() + (s.pa <= 1 ? 0 : q * s.m * s.k);
    const double* bp = b.data() + (s.pb <= 1 ? 0 : q * s.k * s.n);
    double* out = c.data() + (sum_batch ? 0 : q * s.m * s.n);
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = 0; j < s.n; ++j) {
        double acc = 0;
        for (int64_t l = 0; l < s.k; ++l)
          acc += (s.ta ? ap[l * s.m + i] : ap[i * s.k + l]) *
                 (s.tb ? bp[j * s.k + l] : bp[l * s.n + j]);
        out[i * s.n + j] += alpha * acc;
      }
  }
  return c;
}

Shape operand(int64_t batch, int64_t rows, int64_t cols) {
  return batch == 0 ? Shape{rows, cols} : Shape{batch, rows, cols};
}

void check(const Case& s, DType dtype, double beta, bool sum_batch, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "pa=" << s.pa << " pb=" << s.pb << " m=" << s.m
                                    << " n=" << s.n << " k=" << s.k << " ta=" << s.ta
                                    << " tb=" << s.tb << " beta=" << beta << " sum=" << sum_batch
                                    << " " << dtype_name(dtype));
  Shape as = s.ta ? operand(s.pa, s.k, s.m) : operand(s.pa, s.m, s.k);
  Shape bs = s.tb ? operand(s.pb, s.n, s.k) : operand(s.pb, s.k, s.n);
  int64_t pc = sum_batch ? 0 : std::max(s.pa, s.pb);
  Shape cs = operand(pc, s.m, s.n);
  std::vector<double> av = randn(as.numel(), seed), bv = randn(bs.numel(), seed + 1);
  std::vector<double> cv = randn(cs.numel(), seed + 2);
  if (beta == 0) cv.assign(cv.size(), std::numeric_limits<double>::quiet_NaN());
  Tensor a = Tensor::from_values(as, av, dtype), b = Tensor::from_values(bs, bv, dtype);
  Tensor c = Tensor::from_values(cs, cv, dtype);
  const double alpha = 0.75;
  // The reference sees the operands as stored (rounded to dtype); c's NaNs count as 0.
  std::vector<double> c_before = beta == 0 ? std::vector<double>(cv.size(), 0.0) : c.to_vector();
  gemm(a, s.ta, b, s.tb, c, alpha, beta);
  std::vector<double> expected =
      reference(s, a.to_vector(), b.to_vector(), c_before, alpha, beta, sum_batch);
  std::vector<double> got = c.to_vector();
  ASSERT_EQ(got.size(), expected.size());
  // Each element is one sum of k products: error ~ k * eps * |terms|.
  double eps = dtype == DType::f64 ? 1e-15 : 6e-8;
  double tol = 8 * eps * static_cast<double>(s.k + 2) * 4;
  for (std::size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << "element " << i;
    ASSERT_NEAR(got[i], expected[i], tol * std::max(1.0, std::abs(expected[i]))) << "element " << i;
  }
}

TEST(ThinGemm, EveryTransposeOddSizesAndBatchLayouts) {
  uint64_t seed = 100;
  for (DType dtype : {DType::f64, DType::f32})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        // Partial vectors (17, 33, 100 columns), row tails (13), k = 1, a batch below
        // and above the whole-matrix split (3 and 9), broadcast B, a rank-2 product.
        for (Case s : {Case{0, 0, 13, 17, 7, ta, tb}, Case{3, 3, 37, 33, 64, ta, tb},
                       Case{9, 9, 29, 16, 5, ta, tb}, Case{9, 0, 12, 100, 1, ta, tb},
                       Case{0, 0, 1, 48, 300, ta, tb}})
          for (double beta : {0.0, -0.5}) check(s, dtype, beta, false, seed += 3);
      }
}

TEST(ThinGemm, TransposedAIsCopiedInBlocks) {
  // m > 2 * 96 rows of a transposed A: the kernel copies row blocks (with a partial last
  // block); a batch of 2 splits rows between items.
  check(Case{2, 2, 301, 32, 40, true, false}, DType::f64, 0.0, false, 7);
  check(Case{2, 2, 301, 19, 40, true, true}, DType::f32, 1.0, false, 9);
  check(Case{0, 0, 1000, 64, 33, true, false}, DType::f64, 0.25, false, 11);
}

TEST(ThinGemm, BatchSummedIntoOneOutput) {
  // Weight-gradient form: a batch of products summed into a single [m, n] output.
  check(Case{5, 5, 40, 24, 30, true, false}, DType::f64, 1.0, true, 21);
  check(Case{5, 0, 40, 24, 30, false, true}, DType::f64, 0.0, true, 23);
}

TEST(ThinGemm, SameBitsForAnyThreadCount) {
  Tensor a = Tensor::empty(Shape{3, 64, 250}, DType::f32), b = Tensor::empty(Shape{3, 64, 40});
  fill_normal(a, 31, 0);
  fill_normal(b, 32, 0);
  int saved = num_threads();
  set_num_threads(1);
  Tensor one = matmul(a, b, true, false);
  set_num_threads(2);
  Tensor two = matmul(a, b, true, false);
  set_num_threads(saved);
  EXPECT_EQ(one.to_vector(), two.to_vector());
}

}  // namespace
}  // namespace lra::core
