#include <gtest/gtest.h>

#include <cmath>

#include "core/parallel.h"
#include "core/rng.h"

namespace lra::core {
namespace {

// Known-answer vectors of Philox4x32-10 (Salmon et al., SC'11; Random123 kat_vectors).
TEST(Philox, KnownAnswers) {
  auto zero = philox4x32_10({0, 0, 0, 0}, {0, 0});
  EXPECT_EQ(zero[0], 0x6627e8d5u);
  EXPECT_EQ(zero[1], 0xe169c58du);
  EXPECT_EQ(zero[2], 0xbc57ac4cu);
  EXPECT_EQ(zero[3], 0x9b00dbd8u);
  auto ones = philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                            {0xffffffffu, 0xffffffffu});
  EXPECT_EQ(ones[0], 0x408f276du);
  EXPECT_EQ(ones[1], 0x41c83b0eu);
  EXPECT_EQ(ones[2], 0xa20bc7c6u);
  EXPECT_EQ(ones[3], 0x6d5451fdu);
  auto pi = philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                          {0xa4093822u, 0x299f31d0u});
  EXPECT_EQ(pi[0], 0xd16cfe09u);
  EXPECT_EQ(pi[1], 0x94fdccebu);
  EXPECT_EQ(pi[2], 0x5001e420u);
  EXPECT_EQ(pi[3], 0x24126ea1u);
}

TEST(Rng, SameStreamForOneAndTwoThreads) {
  int saved = num_threads();
  Tensor one = Tensor::empty(Shape{200003}, DType::f64);
  Tensor two = Tensor::empty(Shape{200003}, DType::f64);
  Tensor u1 = Tensor::empty(Shape{100001}, DType::f32);
  Tensor u2 = Tensor::empty(Shape{100001}, DType::f32);
  set_num_threads(1);
  fill_normal(one, 7, 123);
  fill_uniform(u1, 7, 5);
  set_num_threads(2);
  fill_normal(two, 7, 123);
  fill_uniform(u2, 7, 5);
  set_num_threads(saved);
  EXPECT_EQ(one.to_vector(), two.to_vector());
  EXPECT_EQ(u1.to_vector(), u2.to_vector());
}

TEST(Rng, OffsetsContinueTheSameStream) {
  Tensor whole = Tensor::empty(Shape{1000}, DType::f64);
  fill_normal(whole, 3, 0);
  Rng rng(3);
  Tensor first = Tensor::empty(Shape{401}, DType::f64);
  Tensor rest = Tensor::empty(Shape{599}, DType::f64);
  rng.normal(first);
  rng.normal(rest);
  EXPECT_EQ(rng.offset(), 1000u);
  for (int i = 0; i < 401; ++i) EXPECT_EQ(first.data<double>()[i], whole.data<double>()[i]);
  for (int i = 0; i < 599; ++i) EXPECT_EQ(rest.data<double>()[i], whole.data<double>()[401 + i]);
  Tensor other = Tensor::empty(Shape{1000}, DType::f64);
  fill_normal(other, 4, 0);
  EXPECT_NE(other.to_vector(), whole.to_vector());
}

TEST(Rng, NormalMomentsWithinFiveSigma) {
  const int64_t n = 1000000;
  Tensor t = Tensor::empty(Shape{n}, DType::f64);
  fill_normal(t, 2026, 0);
  double sum = 0, sum2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    double x = t.data<double>()[i];
    sum += x;
    sum2 += x * x;
  }
  double mean = sum / n, var = sum2 / n - mean * mean;
  EXPECT_LT(std::abs(mean), 5.0 / std::sqrt(static_cast<double>(n)));
  // Var of the sample variance of a normal is 2 / n.
  EXPECT_LT(std::abs(var - 1.0), 5.0 * std::sqrt(2.0 / static_cast<double>(n)));
}

TEST(Rng, UniformRangeAndMean) {
  const int64_t n = 1000000;
  Tensor t = Tensor::empty(Shape{n}, DType::f32);
  fill_uniform(t, 9, 0, -2.0, 3.0);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    float x = t.data<float>()[i];
    ASSERT_GE(x, -2.0f);
    ASSERT_LT(x, 3.0f);
    sum += x;
  }
  // Uniform(-2, 3): mean 0.5, std 5 / sqrt(12).
  EXPECT_LT(std::abs(sum / n - 0.5), 5.0 * (5.0 / std::sqrt(12.0)) / std::sqrt(static_cast<double>(n)));
}

}  // namespace
}  // namespace lra::core
