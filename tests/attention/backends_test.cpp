// Gradient checks, identities, references and masking for the attention backends.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/ops.h"
#include "core/ops_attention.h"
#include "support.h"
#include "tests/support/grad_check.h"

namespace lra::test {
namespace {

struct GradCase {
  std::string spec;
  bool padded;
};

// Checks d_q, d_k, d_v and every parameter's gradient of sum(w ⊙ out) against central
// differences (f64, B=2, H=2, N=7, D=3).
void check_gradients(const GradCase& c) {
  SCOPED_TRACE(c.spec + (c.padded ? " (padded)" : ""));
  SingleThread single;
  AttnShape shape{2, 2, 7, 3};
  Shape s{2, 2, 7, 3};
  auto attn = make_backend(c.spec, shape);
  Tensor q = randn(s, 1), k = randn(s, 2), v = randn(s, 3), w = randn(s, 4);
  // Sequence 1 has 2 real tokens: fewer than 3 landmarks, so one landmark is empty.
  Tensor mask = c.padded ? prefix_mask(7, {6, 2}) : Tensor();
  auto loss = [&] {
    attention::Context ctx;
    Tensor out;
    attn->forward(q, k, v, mask, out, ctx);
    return weighted_sum(out, w);
  };
  attention::Context ctx;
  Tensor out, dq, dk, dv;
  attn->forward(q, k, v, mask, out, ctx);
  for (auto* p : attn->parameters()) p->zero_grad();
  attn->backward(w, ctx, dq, dk, dv);
  ASSERT_EQ(dq.shape(), s);
  ASSERT_EQ(dk.shape(), s);
  ASSERT_EQ(dv.shape(), s);
  EXPECT_LT(finite_difference_error(q, dq, loss), 1e-6) << "d_q";
  EXPECT_LT(finite_difference_error(k, dk, loss), 1e-6) << "d_k";
  EXPECT_LT(finite_difference_error(v, dv, loss), 1e-6) << "d_v";
  for (auto* p : attn->parameters()) {
    Tensor grad = p->grad.clone();
    EXPECT_LT(finite_difference_error(p->value, grad, loss), 1e-6) << "d_" << p->name;
  }
  // Parameter gradients accumulate over backward calls.
  std::vector<Tensor> first;
  for (auto* p : attn->parameters()) first.push_back(p->grad.clone());
  attn->backward(w, ctx, dq, dk, dv);
  for (std::size_t j = 0; j < first.size(); ++j)
    for (int64_t i = 0; i < first[j].numel(); ++i)
      EXPECT_NEAR(attn->parameters()[j]->grad.data<double>()[i], 2 * first[j].data<double>()[i],
                  1e-12);
}

class GradientCheck : public ::testing::TestWithParam<GradCase> {};
TEST_P(GradientCheck, MatchesCentralDifferences) { check_gradients(GetParam()); }

INSTANTIATE_TEST_SUITE_P(
    Backends, GradientCheck,
    ::testing::Values(GradCase{"{type: softmax}", false}, GradCase{"{type: softmax}", true},
                      GradCase{"{type: softmax, kernel: composed}", false},
                      GradCase{"{type: softmax, kernel: composed}", true},
                      GradCase{"{type: linear}", false}, GradCase{"{type: linear}", true},
                      GradCase{"{type: linformer, k: 4}", false},
                      GradCase{"{type: linformer, k: 4}", true},
                      GradCase{"{type: linformer, k: 5, share_kv: false, max_len: 9}", true},
                      GradCase{"{type: linformer, k: 9, share_kv: false}", false},
                      GradCase{"{type: nystrom, landmarks: 3, conv_kernel: 0}", false},
                      GradCase{"{type: nystrom, landmarks: 3, conv_kernel: 0}", true},
                      GradCase{"{type: nystrom, landmarks: 3, conv_kernel: 3}", false},
                      GradCase{"{type: nystrom, landmarks: 3, conv_kernel: 5}", true},
                      GradCase{"{type: nystrom, landmarks: 4, pinv_iters: 2, conv_kernel: 0}",
                               true},
                      GradCase{"{type: nystrom, landmarks: 8, conv_kernel: 3}", true}));

// ------------------------------------------------------------ exact references
TEST(Softmax, MatchesNaiveLoops) {
  SingleThread single;
  Shape s{2, 3, 9, 4};
  Tensor q = randn(s, 11), k = randn(s, 12), v = randn(s, 13);
  for (const char* spec : {"{type: softmax}", "{type: softmax, kernel: composed}"})
  for (bool padded : {false, true}) {
    Tensor mask = padded ? prefix_mask(9, {9, 4}) : Tensor();
    auto attn = make_backend(spec, {2, 3, 9, 4});
    attention::Context ctx;
    Tensor out;
    attn->forward(q, k, v, mask, out, ctx);
    auto ref = naive_softmax_attention(q, k, v, mask);
    EXPECT_LT(max_diff_real_rows(out.to_vector(), ref, s, Tensor()), 1e-12);
  }
}

TEST(Linear, MatchesNaiveLoops) {
  SingleThread single;
  Shape s{2, 2, 8, 3};
  Tensor q = randn(s, 21), k = randn(s, 22), v = randn(s, 23);
  Tensor mask = prefix_mask(8, {8, 3});
  auto attn = make_backend("{type: linear}", {2, 2, 8, 3});
  attention::Context ctx;
  Tensor out;
  attn->forward(q, k, v, mask, out, ctx);
  auto phi = [](double x) { return x > 0 ? x + 1 : std::exp(x); };
  std::vector<double> ref(static_cast<std::size_t>(s.numel()));
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t i = 0; i < 8; ++i) {
        std::vector<double> num(3, 0.0);
        double den = 0;
        for (int64_t j = 0; j < 8; ++j) {
          if (!mask_keep(mask, b, j)) continue;
          double sim = 0;
          for (int64_t d = 0; d < 3; ++d) sim += phi(q.at({b, h, i, d})) * phi(k.at({b, h, j, d}));
          den += sim;
          for (int64_t d = 0; d < 3; ++d)
            num[static_cast<std::size_t>(d)] += sim * v.at({b, h, j, d});
        }
        for (int64_t d = 0; d < 3; ++d)
          ref[static_cast<std::size_t>(((b * 2 + h) * 8 + i) * 3 + d)] =
              num[static_cast<std::size_t>(d)] / den;
      }
  EXPECT_LT(max_diff_real_rows(out.to_vector(), ref, s, Tensor()), 1e-12);
}

TEST(Linformer, MatchesNaiveLoopsWithCroppedProjection) {
  // max_len 10 > N 7: the first 7 columns of E (k = 4 rows) are used; padded keys zeroed.
  Shape s{2, 2, 7, 3};
  Tensor q = randn(s, 31), k = randn(s, 32), v = randn(s, 33);
  Tensor mask = prefix_mask(7, {7, 5});
  auto attn = make_backend("{type: linformer, k: 4, max_len: 10, share_kv: false}", {2, 2, 7, 3});
  auto params = attn->parameters();
  ASSERT_EQ(params.size(), 2u);
  const Tensor& E = params[0]->value;
  const Tensor& F = params[1]->value;
  ASSERT_EQ(E.shape(), (Shape{4, 10}));
  attention::Context ctx;
  Tensor out;
  attn->forward(q, k, v, mask, out, ctx);
  std::vector<double> ref(static_cast<std::size_t>(s.numel()));
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 2; ++h) {
      double kp[4][3] = {}, vp[4][3] = {};
      for (int64_t r = 0; r < 4; ++r)
        for (int64_t j = 0; j < 7; ++j)
          if (mask_keep(mask, b, j))
            for (int64_t d = 0; d < 3; ++d) {
              kp[r][d] += E.at({r, j}) * k.at({b, h, j, d});
              vp[r][d] += F.at({r, j}) * v.at({b, h, j, d});
            }
      for (int64_t i = 0; i < 7; ++i) {
        double logits[4], mx = -INFINITY, tot = 0;
        for (int r = 0; r < 4; ++r) {
          logits[r] = 0;
          for (int64_t d = 0; d < 3; ++d)
            logits[r] += q.at({b, h, i, d}) * kp[r][d] / std::sqrt(3.0);
          mx = std::max(mx, logits[r]);
        }
        for (double& l : logits) tot += (l = std::exp(l - mx));
        for (int64_t d = 0; d < 3; ++d) {
          double acc = 0;
          for (int r = 0; r < 4; ++r) acc += logits[r] / tot * vp[r][d];
          ref[static_cast<std::size_t>(((b * 2 + h) * 7 + i) * 3 + d)] = acc;
        }
      }
    }
  EXPECT_LT(max_diff_real_rows(out.to_vector(), ref, s, Tensor()), 1e-12);
}

// Independent Nyström reference with Eigen, per (b, h): landmarks over the real tokens
// (uneven segments: the first m - n % m get n / m tokens), empty landmarks dropped, the
// iteration on the real block only.
std::vector<double> naive_nystrom(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& mask, int64_t m, int iters) {
  using Mat = Eigen::MatrixXd;
  int64_t B = q.dim(0), H = q.dim(1), N = q.dim(2), D = q.dim(3);
  std::vector<double> out(static_cast<std::size_t>(q.numel()));
  double sc = 1.0 / std::sqrt(static_cast<double>(D));
  auto softmax_rows = [](Mat x) {
    for (int64_t r = 0; r < x.rows(); ++r) {
      double mx = x.row(r).maxCoeff();
      x.row(r) = (x.row(r).array() - mx).exp();
      x.row(r) /= x.row(r).sum();
    }
    return x;
  };
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> pos;
    for (int64_t j = 0; j < N; ++j)
      if (mask_keep(mask, b, j)) pos.push_back(j);
    int64_t n = static_cast<int64_t>(pos.size());
    std::vector<std::pair<int64_t, int64_t>> segs;  // non-empty [start, end) in rank space
    for (int64_t s = 0, start = 0; s < m; ++s) {
      int64_t len = n / m + (s >= m - n % m ? 1 : 0);
      if (len > 0) segs.push_back({start, start + len});
      start += len;
    }
    int64_t r = static_cast<int64_t>(segs.size());
    for (int64_t h = 0; h < H; ++h) {
      Mat Q(N, D), K(n, D), V(n, D), Ql = Mat::Zero(r, D), Kl = Mat::Zero(r, D);
      for (int64_t i = 0; i < N; ++i)
        for (int64_t d = 0; d < D; ++d) Q(i, d) = q.at({b, h, i, d});
      for (int64_t i = 0; i < n; ++i)
        for (int64_t d = 0; d < D; ++d) {
          K(i, d) = k.at({b, h, pos[static_cast<std::size_t>(i)], d});
          V(i, d) = v.at({b, h, pos[static_cast<std::size_t>(i)], d});
        }
      for (int64_t s = 0; s < r; ++s) {
        auto [s0, s1] = segs[static_cast<std::size_t>(s)];
        for (int64_t i = s0; i < s1; ++i) {
          for (int64_t d = 0; d < D; ++d) {
            Ql(s, d) +=
                q.at({b, h, pos[static_cast<std::size_t>(i)], d}) / static_cast<double>(s1 - s0);
            Kl(s, d) += K(i, d) / static_cast<double>(s1 - s0);
          }
        }
      }
      Mat F = softmax_rows(sc * Q * Kl.transpose());
      Mat A = softmax_rows(sc * Ql * Kl.transpose());
      Mat Bm = softmax_rows(sc * Ql * K.transpose());
      double n1 = A.cwiseAbs().colwise().sum().maxCoeff(),
             ninf = A.cwiseAbs().rowwise().sum().maxCoeff();
      Mat Z = A.transpose() / (n1 * ninf);
      Mat I = Mat::Identity(r, r);
      for (int it = 0; it < iters; ++it) {
        Mat AZ = A * Z;
        Z = 0.25 * Z * (13 * I - AZ * (15 * I - AZ * (7 * I - AZ)));
      }
      Mat O = F * (Z * (Bm * V));
      for (int64_t i = 0; i < N; ++i)
        for (int64_t d = 0; d < D; ++d)
          out[static_cast<std::size_t>(((b * H + h) * N + i) * D + d)] = O(i, d);
    }
  }
  return out;
}

TEST(Nystrom, MatchesEigenReferenceWithUnevenAndEmptySegments) {
  SingleThread single;
  Shape s{3, 2, 11, 4};
  Tensor q = randn(s, 41), k = randn(s, 42), v = randn(s, 43);
  for (bool padded : {false, true}) {
    // Real lengths 11, 6 (uneven: 4 landmarks ∤ 6) and 3 (one landmark empty).
    Tensor mask = padded ? prefix_mask(11, {11, 6, 3}) : Tensor();
    for (int iters : {0, 1, 6}) {
      auto attn = make_backend(
          fmt::format("{{type: nystrom, landmarks: 4, pinv_iters: {}, conv_kernel: 0}}", iters),
          {3, 2, 11, 4});
      attention::Context ctx;
      Tensor out;
      attn->forward(q, k, v, mask, out, ctx);
      auto ref = naive_nystrom(q, k, v, mask, 4, iters);
      EXPECT_LT(max_diff_real_rows(out.to_vector(), ref, s, mask), 1e-11)
          << "padded " << padded << " iters " << iters;
    }
  }
}

TEST(Nystrom, ConvAddsDepthwiseConvolutionOfMaskedValues) {
  SingleThread single;
  Shape s{2, 2, 9, 3};
  Tensor q = randn(s, 51), k = randn(s, 52), v = randn(s, 53);
  Tensor mask = prefix_mask(9, {9, 5});
  auto with = make_backend("{type: nystrom, landmarks: 3, conv_kernel: 5}", {2, 2, 9, 3});
  auto without = make_backend("{type: nystrom, landmarks: 3, conv_kernel: 0}", {2, 2, 9, 3});
  attention::Context c1, c2;
  Tensor o1, o2;
  with->forward(q, k, v, mask, o1, c1);
  without->forward(q, k, v, mask, o2, c2);
  const Tensor& w = with->parameters().at(0)->value;
  ASSERT_EQ(w.shape(), (Shape{2, 5}));
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t i = 0; i < 9; ++i)
        for (int64_t d = 0; d < 3; ++d) {
          double conv = 0;
          for (int64_t j = 0; j < 5; ++j) {
            int64_t src = i + j - 2;
            if (src >= 0 && src < 9 && mask_keep(mask, b, src))
              conv += w.at({h, j}) * v.at({b, h, src, d});
          }
          EXPECT_NEAR(o1.at({b, h, i, d}) - o2.at({b, h, i, d}), conv, 1e-12);
        }
}

// ------------------------------------------------------------ identities
TEST(Nystrom, EqualsSoftmaxWhenLandmarksCoverTheSequence) {
  SingleThread single;
  for (int64_t m : {7, 8, 64}) {
    Shape s{2, 2, 7, 5};
    Tensor q = randn(s, 61), k = randn(s, 62), v = randn(s, 63);
    for (bool padded : {false, true}) {
      Tensor mask = padded ? prefix_mask(7, {7, 4}) : Tensor();
      auto attn = make_backend(fmt::format("{{type: nystrom, landmarks: {}, conv_kernel: 0}}", m),
                               {2, 2, 7, 5});
      attention::Context ctx;
      Tensor out;
      attn->forward(q, k, v, mask, out, ctx);
      auto ref = naive_softmax_attention(q, k, v, mask);
      EXPECT_LT(max_diff_real_rows(out.to_vector(), ref, s, mask), 1e-10) << "m " << m;
    }
  }
}

TEST(Linformer, IdentityProjectionEqualsSoftmax) {
  // k == N and k > N (only the first N rows of E are used), E = identity.
  for (int64_t kk : {7, 10}) {
    Shape s{2, 2, 7, 3};
    Tensor q = randn(s, 71), k = randn(s, 72), v = randn(s, 73);
    auto attn =
        make_backend(fmt::format("{{type: linformer, k: {}, max_len: {}}}", kk, kk), {2, 2, 7, 3});
    Tensor& E = attn->parameters().at(0)->value;
    for (int64_t r = 0; r < kk; ++r)
      for (int64_t c = 0; c < kk; ++c) E.data<double>()[r * kk + c] = r == c ? 1.0 : 0.0;
    attention::Context ctx;
    Tensor out;
    attn->forward(q, k, v, Tensor(), out, ctx);
    auto ref = naive_softmax_attention(q, k, v, Tensor());
    EXPECT_LT(max_diff_real_rows(out.to_vector(), ref, s, Tensor()), 1e-10) << "k " << kk;
  }
}

// ------------------------------------------------------------ approximation quality
TEST(Nystrom, ErrorFallsAsLandmarksGrow) {
  SingleThread single;
  // Medians over seeds of the relative Frobenius error against exact softmax.
  const int64_t N = 256, D = 16;
  Shape s{1, 1, N, D};
  std::vector<int64_t> landmarks{4, 8, 16, 32, 64, 128};
  std::vector<double> medians;
  for (int64_t m : landmarks) {
    std::vector<double> errs;
    for (uint64_t seed = 0; seed < 5; ++seed) {
      Tensor q = randn(s, 100 + seed), k = randn(s, 200 + seed), v = randn(s, 300 + seed);
      auto attn = make_backend(fmt::format("{{type: nystrom, landmarks: {}, conv_kernel: 0}}", m),
                               {1, 1, N, D});
      attention::Context ctx;
      Tensor out;
      attn->forward(q, k, v, Tensor(), out, ctx);
      errs.push_back(rel_fro(out.to_vector(), naive_softmax_attention(q, k, v, Tensor())));
    }
    std::sort(errs.begin(), errs.end());
    medians.push_back(errs[2]);
    std::printf("landmarks %ld median rel error %.4f\n", static_cast<long>(m), errs[2]);
  }
  for (std::size_t i = 1; i < medians.size(); ++i)
    EXPECT_LT(medians[i], medians[i - 1])
        << "landmarks " << landmarks[i] << " vs " << landmarks[i - 1];
  EXPECT_LT(medians.back(), 0.7 * medians.front());
}

// ------------------------------------------------------------ masking, every backend
std::string small_spec(const std::string& type) {
  if (type == "nystrom") return "{type: nystrom, landmarks: 4, conv_kernel: 3}";
  if (type == "linformer") return "{type: linformer, k: 5}";
  return "{type: " + type + "}";
}

TEST(Masking, PaddedKeysNeverReachRealQueries) {
  SingleThread single;
  ASSERT_FALSE(attention::backends().empty());
  const int64_t B = 2, H = 2, N = 13, D = 4;
  Shape s{B, H, N, D};
  Tensor mask = prefix_mask(N, {10, 6});
  Tensor q = randn(s, 81), k = randn(s, 82), v = randn(s, 83);
  Tensor junk = randn(s, 84, 100.0);
  Tensor k2 = garble_padded_rows(k, mask, junk), v2 = garble_padded_rows(v, mask, junk, -1.0);
  for (const auto& [name, info] : attention::backends()) {
    SCOPED_TRACE(name);
    auto a1 = make_backend(small_spec(name), {B, H, N, D}, 5);
    auto a2 = make_backend(small_spec(name), {B, H, N, D}, 5);
    attention::Context c1, c2;
    Tensor o1, o2;
    a1->forward(q, k, v, mask, o1, c1);
    a2->forward(q, k2, v2, mask, o2, c2);
    auto x1 = o1.to_vector();
    double scale = 0;
    for (double x : x1) scale = std::max(scale, std::abs(x));
    EXPECT_LE(max_diff_real_rows(x1, o2.to_vector(), s, mask), 1e-12 * std::max(1.0, scale));
    for (double x : o2.to_vector()) ASSERT_TRUE(std::isfinite(x));
  }
}

TEST(AnyLength, EveryBackendHandlesTinySequences) {
  SingleThread single;
  for (const auto& [name, info] : attention::backends()) {
    for (int64_t N : {1, 2, 3}) {
      SCOPED_TRACE(name + " N=" + std::to_string(N));
      Shape s{2, 1, N, 4};
      Tensor q = randn(s, 91), k = randn(s, 92), v = randn(s, 93);
      Tensor mask = prefix_mask(N, {N, 1});
      auto attn = make_backend(small_spec(name), {2, 1, N, 4});
      attention::Context ctx;
      Tensor out, dq, dk, dv;
      attn->forward(q, k, v, mask, out, ctx);
      attn->backward(randn(s, 94), ctx, dq, dk, dv);
      for (const Tensor* t : {&out, &dq, &dk, &dv})
        for (double x : t->to_vector()) ASSERT_TRUE(std::isfinite(x));
    }
  }
}

TEST(Cost, ScalesAsDocumented) {
  AttnShape s1{1, 2, 1024, 32}, s2{1, 2, 2048, 32};
  auto soft = make_backend("{type: softmax}", s2);
  EXPECT_NEAR(soft->cost(s2).forward_flops / soft->cost(s1).forward_flops, 4.0, 1e-9);
  for (const char* spec :
       {"{type: linear}", "{type: linformer, k: 64}", "{type: nystrom, landmarks: 64}"}) {
    auto a = make_backend(spec, s2);
    double r = a->cost(s2).forward_flops / a->cost(s1).forward_flops;
    EXPECT_GT(r, 1.5) << spec;
    EXPECT_LT(r, 2.1) << spec;
    EXPECT_GT(a->cost(s2).backward_flops, a->cost(s2).forward_flops) << spec;
    EXPECT_GT(a->cost(s2).forward_bytes, 0) << spec;
  }
}

TEST(Spec, UnknownKeysAndBadValuesAreErrors) {
  EXPECT_THROW(make_backend("{type: nystrom, landmark: 4}", {1, 1, 8, 4}), Error);
  EXPECT_THROW(make_backend("{type: nystrom, conv_kernel: 4}", {1, 1, 8, 4}), Error);
  EXPECT_THROW(make_backend("{type: linformer, k: 0}", {1, 1, 8, 4}), Error);
  EXPECT_THROW(make_backend("{type: linformer, max_len: 4}", {1, 1, 8, 4}), Error);
  EXPECT_THROW(make_backend("{type: softmax, k: 4}", {1, 1, 8, 4}), Error);
  EXPECT_THROW(make_backend("{type: softmax, kernel: flash}", {1, 1, 8, 4}), Error);
}

class SoftmaxKernels : public ::testing::TestWithParam<const char*> {};
INSTANTIATE_TEST_SUITE_P(FusedAndComposed, SoftmaxKernels,
                         ::testing::Values("{type: softmax}", "{type: softmax, kernel: composed}"));

TEST_P(SoftmaxKernels, DropoutOnlyWhenTraining) {
  attention::AttentionOptions o;
  o.dtype = DType::f64;
  o.dropout = 0.5;
  auto attn = attention::make_attention(YAML::Load(GetParam()), {1, 1, 6, 2}, o);
  Shape s{1, 1, 6, 2};
  Tensor q = randn(s, 1), k = randn(s, 2), v = randn(s, 3);
  attention::Context c1, c2;
  Tensor eval_out, train_out;
  attn->forward(q, k, v, Tensor(), eval_out, c1);
  EXPECT_LT(max_diff_real_rows(eval_out.to_vector(), naive_softmax_attention(q, k, v, Tensor()), s,
                               Tensor()),
            1e-12);
  attn->set_training(true);
  attn->forward(q, k, v, Tensor(), train_out, c2);
  EXPECT_GT(max_diff_real_rows(eval_out.to_vector(), train_out.to_vector(), s, Tensor()), 1e-3);
  // The backward of the dropped-out weights matches finite differences too.
  Tensor w = randn(s, 4), dq, dk, dv;
  attn->backward(w, c2, dq, dk, dv);
  // The documented mask: core::dropout_mask over [B, H, N, N] with the layer seed and
  // counter offset step << 40 (step 0 here).
  Tensor keep = core::dropout_mask(Shape{1, 1, 6, 6}, 0.5, o.seed, 0, DType::f64);
  auto loss = [&] {
    Tensor scores = core::softmax(core::matmul(q, k, false, true), Tensor(), 1.0 / std::sqrt(2.0));
    return weighted_sum(core::matmul(core::mul(scores, keep), v), w);
  };
  EXPECT_LT(finite_difference_error(q, dq, loss), 1e-6);
  EXPECT_LT(finite_difference_error(v, dv, loss), 1e-6);
}

}  // namespace
}  // namespace lra::test
