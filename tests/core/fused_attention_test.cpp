// The fused softmax attention op against the same attention composed from core ops
// (scores, masked softmax, dropout mask, products — every N x N matrix formed): outputs,
// log-sum-exp and all three gradients, with padding, a sequence without any real key,
// dropout, several query tiles and a partial last tile.
#include <gtest/gtest.h>

#include "tests/support/attention_masks.h"

#include <cmath>
#include <limits>
#include <vector>

#include "core/ops.h"
#include "core/ops_attention.h"
#include "core/ops_fused_attention.h"
#include "core/rng.h"

namespace lra::core {
namespace {

Tensor randn(const Shape& shape, uint64_t seed, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  fill_normal(t, seed, 0);
  return t;
}

double max_rel_diff(const Tensor& got, const Tensor& want) {
  auto g = got.to_vector(), w = want.to_vector();
  EXPECT_EQ(g.size(), w.size());
  double scale = 1e-30, err = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    EXPECT_TRUE(std::isfinite(g[i])) << "element " << i;
    scale = std::max(scale, std::abs(w[i]));
    err = std::max(err, std::abs(g[i] - w[i]));
  }
  return err / scale;
}

struct Composed {
  Tensor out, probs, weights, keep;
};
Composed composed_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                          double scale, const AttentionDropout& d) {
  Composed c;
  c.probs = softmax(matmul(q, k, false, true), mask, scale);
  c.weights = c.probs;
  if (d.p > 0) {
    c.keep = dropout_mask(c.probs.shape(), d.p, d.seed, d.offset, c.probs.dtype());
    c.weights = mul(c.probs, c.keep);
  }
  c.out = matmul(c.weights, v);
  return c;
}

void check(int64_t batch, int64_t heads, int64_t n, int64_t d, DType dtype, double p,
           bool padded) {
  SCOPED_TRACE(::testing::Message() << "B=" << batch << " H=" << heads << " N=" << n << " D=" << d
                                    << " " << dtype_name(dtype) << " p=" << p << " padded=" << padded);
  Tensor q = randn(Shape{batch, heads, n, d}, 1, dtype);
  Tensor k = randn(Shape{batch, heads, n, d}, 2, dtype);
  Tensor v = randn(Shape{batch, heads, n, d}, 3, dtype);
  Tensor g = randn(Shape{batch, heads, n, d}, 4, dtype);
  Tensor mask = padded ? test::tail_padded_mask(batch, n, dtype) : Tensor();
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  AttentionDropout drop{p, 77, uint64_t{5} << 40};
  FusedAttention f = fused_softmax_attention(q, k, v, mask, scale, drop);
  Composed c = composed_forward(q, k, v, mask, scale, drop);
  const double tol = dtype == DType::f64 ? 1e-12 : 2e-5;
  EXPECT_LT(max_rel_diff(f.out, c.out), tol) << "out";

  // lse against a float64 loop over the real keys.
  auto qv = q.to_vector(), kv = k.to_vector(), lv = f.lse.to_vector();
  std::vector<double> mv = mask.defined() ? mask.to_vector() : std::vector<double>(batch * n, 1.0);
  for (int64_t bh = 0; bh < batch * heads; ++bh)
    for (int64_t i = 0; i < n; ++i) {
      int64_t b = bh / heads;
      double mx = -std::numeric_limits<double>::infinity();
      std::vector<double> s(static_cast<std::size_t>(n));
      for (int64_t j = 0; j < n; ++j) {
        double dot = 0;
        for (int64_t t = 0; t < d; ++t)
          dot += qv[static_cast<std::size_t>((bh * n + i) * d + t)] *
                 kv[static_cast<std::size_t>((bh * n + j) * d + t)];
        s[static_cast<std::size_t>(j)] = scale * dot;
        if (mv[static_cast<std::size_t>(b * n + j)] != 0) mx = std::max(mx, scale * dot);
      }
      double got = lv[static_cast<std::size_t>(bh * n + i)];
      if (mx == -std::numeric_limits<double>::infinity()) {
        EXPECT_EQ(got, mx) << "row without real keys";
        continue;
      }
      double sum = 0;
      for (int64_t j = 0; j < n; ++j)
        if (mv[static_cast<std::size_t>(b * n + j)] != 0) sum += std::exp(s[static_cast<std::size_t>(j)] - mx);
      ASSERT_NEAR(got, mx + std::log(sum), dtype == DType::f64 ? 1e-12 : 1e-4) << bh << "," << i;
    }

  // Gradients against the composed backward.
  FusedAttentionGrads fg = fused_softmax_attention_backward(q, k, v, mask, scale, drop, f.lse, f.out, g);
  Tensor d_weights = matmul(g, v, false, true);
  Tensor dv = matmul(c.weights, g, true, false);
  if (p > 0) d_weights = mul(d_weights, c.keep);
  Tensor d_scores = softmax_backward(c.probs, d_weights, scale);
  EXPECT_LT(max_rel_diff(fg.dq, matmul(d_scores, k)), tol) << "dq";
  EXPECT_LT(max_rel_diff(fg.dk, matmul(d_scores, q, true, false)), tol) << "dk";
  EXPECT_LT(max_rel_diff(fg.dv, dv), tol) << "dv";
}

TEST(FusedAttention, MatchesComposedOpsWithPaddingAndDropout) {
  for (DType dtype : {DType::f64, DType::f32}) {
    check(2, 2, 37, 8, dtype, 0.0, false);
    check(2, 2, 37, 8, dtype, 0.0, true);
    check(2, 1, 45, 16, dtype, 0.3, true);
    // Several query tiles and a partial last one (f64 tiles hold 108 rows at N = 300).
    check(1, 2, 300, 32, dtype, 0.1, true);
  }
}

// bf16 q, k, v (storage): the result is the f64 composed attention of the same bf16 values,
// rounded once to bf16 (relative 2^-9) after f32 arithmetic; lse is f32.
TEST(FusedAttention, Bf16IsStorageForF32Math) {
  const int64_t batch = 2, heads = 2, n = 45, d = 16;
  const Shape shape{batch, heads, n, d};
  Tensor q = randn(shape, 1, DType::bf16), k = randn(shape, 2, DType::bf16);
  Tensor v = randn(shape, 3, DType::bf16), g = randn(shape, 4, DType::bf16);
  Tensor mask = test::tail_padded_mask(batch, n, DType::f32);
  const double scale = 0.25;
  const AttentionDropout drop{0.2, 7, 0};
  FusedAttention f = fused_softmax_attention(q, k, v, mask, scale, drop);
  EXPECT_EQ(f.out.dtype(), DType::bf16);
  EXPECT_EQ(f.lse.dtype(), DType::f32);
  Tensor q64 = q.to(DType::f64), k64 = k.to(DType::f64), v64 = v.to(DType::f64);
  Tensor mask64 = mask.to(DType::f64);
  Composed c = composed_forward(q64, k64, v64, mask64, scale, drop);
  EXPECT_LT(max_rel_diff(f.out, c.out), 0x1p-8) << "out";
  FusedAttentionGrads fg =
      fused_softmax_attention_backward(q, k, v, mask, scale, drop, f.lse, f.out, g);
  for (const Tensor* t : {&fg.dq, &fg.dk, &fg.dv}) EXPECT_EQ(t->dtype(), DType::bf16);
  // The backward's row term uses the stored (bf16) out: 2^-8 of |O| per row, so a looser
  // bound on dQ and dK than the rounding of the results alone.
  Tensor g64 = g.to(DType::f64);
  Tensor d_weights = mul(matmul(g64, v64, false, true), c.keep);
  Tensor d_scores = softmax_backward(c.probs, d_weights, scale);
  EXPECT_LT(max_rel_diff(fg.dq, matmul(d_scores, k64)), 1e-2) << "dq";
  EXPECT_LT(max_rel_diff(fg.dk, matmul(d_scores, q64, true, false)), 1e-2) << "dk";
  EXPECT_LT(max_rel_diff(fg.dv, matmul(c.weights, g64, true, false)), 0x1p-8) << "dv";
}

TEST(FusedAttention, Bf16ReachesOnlyTheOpsThatTakeIt) {
  Tensor x = randn(Shape{2, 3, 4}, 1, DType::bf16);
  try {
    softmax(x, {}, 1.0);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bf16 tensors are not supported"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("softmax"), std::string::npos) << e.what();
  }
  // A key mask holds f32 or f64, never bf16.
  Tensor q = randn(Shape{2, 1, 4, 8}, 2, DType::bf16);
  Tensor bad_mask = Tensor::full(Shape{2, 4}, 1.0, DType::bf16);
  try {
    fused_softmax_attention(q, q, q, bad_mask, 1.0, {});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a key mask holds f32 or f64, got bf16"),
              std::string::npos)
        << e.what();
  }
}

TEST(FusedAttention, DropoutOfOneIsRejected) {
  Tensor q = randn(Shape{1, 1, 4, 2}, 1, DType::f64);
  AttentionDropout bad{1.0, 0, 0};
  EXPECT_THROW(fused_softmax_attention(q, q, q, {}, 1.0, bad), Error);
}

}  // namespace
}  // namespace lra::core

namespace lra::core {
namespace {

TEST(FusedAttention, SameBitsWhateverTheMemoryHeldBefore) {
  // Outputs and gradients must not depend on what freed memory contained: the runs after
  // the first get blocks of the same sizes that were filled with NaN and freed.
  for (int64_t d : {4, 8, 32})
    for (int64_t n : {12, 16, 40}) {
      const Shape shape{4, 2, n, d};
      Tensor q = randn(shape, 11, DType::f32), k = randn(shape, 12, DType::f32);
      Tensor v = randn(shape, 13, DType::f32), g = randn(shape, 14, DType::f32);
      std::vector<double> m(static_cast<std::size_t>(4 * n), 1.0);
      for (int64_t j = n - 3; j < n; ++j) m[static_cast<std::size_t>(j)] = 0;
      Tensor mask = Tensor::from_values(Shape{4, n}, m, DType::f32);
      auto run = [&] {
        FusedAttention f = fused_softmax_attention(q, k, v, mask, 0.5, {});
        FusedAttentionGrads gr = fused_softmax_attention_backward(q, k, v, mask, 0.5, {}, f.lse, f.out, g);
        std::vector<double> all = f.out.to_vector();
        for (const Tensor* t : {&f.lse, &gr.dq, &gr.dk, &gr.dv}) {
          auto x = t->to_vector();
          all.insert(all.end(), x.begin(), x.end());
        }
        return all;
      };
      auto poison = [&] {
        const double nan = std::numeric_limits<double>::quiet_NaN();
        std::vector<Tensor> junk;
        for (int i = 0; i < 4; ++i) junk.push_back(Tensor::full(shape, nan, DType::f32));
        junk.push_back(Tensor::full(Shape{4, 2, n}, nan, DType::f32));
      };
      std::vector<double> first = run();
      poison();
      EXPECT_EQ(first, run()) << "d=" << d << " n=" << n;
    }
}

}  // namespace
}  // namespace lra::core
