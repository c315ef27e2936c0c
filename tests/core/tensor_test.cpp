#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/allocator.h"
#include "core/ops.h"
#include "core/tensor.h"

namespace lra::core {
namespace {

TEST(Tensor, ShapeAndViews) {
  Tensor t = Tensor::from_values(Shape{2, 3}, {0, 1, 2, 3, 4, 5}, DType::f64);
  EXPECT_EQ(t.rank(), 2);
  EXPECT_EQ(t.dim(-1), 3);
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.shape_str(), "[2, 3]");
  Tensor r = t.reshape(Shape{3, 2});
  EXPECT_EQ(r.at({2, 1}), 5.0);
  r.data<double>()[0] = 42;  // a view shares the buffer
  EXPECT_EQ(t.at({0, 0}), 42.0);
  Tensor s = t.slice(1, 2);
  EXPECT_EQ(s.shape(), (Shape{1, 3}));
  EXPECT_EQ(s.at({0, 0}), 3.0);
  Tensor c = t.clone();
  c.data<double>()[0] = -1;
  EXPECT_EQ(t.at({0, 0}), 42.0);
}

TEST(Tensor, DtypeConversionAndChecks) {
  Tensor t = Tensor::from_values(Shape{3}, {1.5, -2.25, 3.0}, DType::f64);
  Tensor f = t.to(DType::f32);
  EXPECT_EQ(f.dtype(), DType::f32);
  EXPECT_FLOAT_EQ(f.data<float>()[1], -2.25f);
  EXPECT_THROW(f.data<double>(), Error);
  EXPECT_THROW(t.reshape(Shape{2, 2}), Error);
  EXPECT_THROW(t.slice(2, 5), Error);
  EXPECT_THROW(Shape({1, 2, 3, 4, 5}), Error);
  EXPECT_THROW(t.at({3}), Error);
}

// bf16 conversions against an oracle built independently: every finite non-negative bf16
// value (its bit pattern as the top half of a float), searched for the nearest one, ties
// to the even pattern.
double bf16_oracle(double x, const std::vector<double>& values) {
  const double a = std::abs(x);
  auto it = std::lower_bound(values.begin(), values.end(), a);
  std::size_t hi = static_cast<std::size_t>(it - values.begin()), lo = hi ? hi - 1 : 0;
  if (hi == values.size()) hi = lo;
  const double dl = a - values[lo], dh = values[hi] - a;
  std::size_t pick = dl < dh ? lo : (dh < dl ? hi : (lo % 2 == 0 ? lo : hi));
  return std::copysign(values[pick], x);
}

TEST(Tensor, Bf16RoundsOnceToNearestEven) {
  std::vector<double> values;  // patterns 0x0000 .. 0x7f7f are the finite non-negatives, ascending
  for (uint32_t bits = 0; bits <= 0x7f7fu; ++bits) {
    const uint32_t u = bits << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    values.push_back(f);
  }
  std::vector<double> xs{1.0 + 0x1p-8,              // tie: to 1 (even)
                         1.0 + 3 * 0x1p-8,          // tie: to 1 + 2^-6 (even)
                         -(1.0 + 0x1p-8 + 0x1p-40),  // above the tie: float rounding would lose it
                         1e-40, -3e-39, 0.0, 65504.0, 3.0e38};
  uint64_t state = 12345;
  for (int i = 0; i < 20000; ++i) {  // log-uniform over float's normal range, both signs
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const double u = static_cast<double>(state >> 11) * 0x1p-53;
    xs.push_back((i % 2 ? -1.0 : 1.0) * std::exp((u * 2 - 1) * 87.0));
  }
  Tensor wide = Tensor::from_values(Shape{static_cast<int64_t>(xs.size())}, xs, DType::f64);
  Tensor narrow = wide.to(DType::bf16);
  EXPECT_EQ(narrow.dtype(), DType::bf16);
  EXPECT_EQ(narrow.bytes(), xs.size() * 2);
  const std::vector<double> back = narrow.to_vector();
  const std::vector<double> via_f32 = wide.to(DType::f32).to(DType::bf16).to_vector();
  for (std::size_t i = 0; i < xs.size(); ++i) {
    ASSERT_EQ(back[i], bf16_oracle(xs[i], values)) << "x = " << xs[i];
    // From f32 (exact in f64) the conversion is the same single rounding.
    const double f = static_cast<float>(xs[i]);
    ASSERT_EQ(via_f32[i], bf16_oracle(f, values)) << "x = " << xs[i];
  }
  EXPECT_EQ(back[0], 1.0);
  EXPECT_EQ(back[1], 1.0 + 0x1p-6);
  EXPECT_EQ(back[2], -(1.0 + 0x1p-7));
  // Past the largest bf16 by at least half an ulp: infinity. NaN stays NaN.
  Tensor edge = Tensor::from_values(Shape{3}, {3.4e38, -std::numeric_limits<double>::infinity(),
                                              std::nan("")}, DType::f32)
                    .to(DType::bf16);
  EXPECT_EQ(edge.at({0}), std::numeric_limits<double>::infinity());
  EXPECT_EQ(edge.at({1}), -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(edge.at({2})));
  // fill and from_values round the same way; f32 <-> bf16 round-trips bf16 values exactly.
  Tensor filled = Tensor::empty(Shape{2}, DType::bf16);
  filled.fill(1.0 + 3 * 0x1p-8);
  EXPECT_EQ(filled.at({1}), 1.0 + 0x1p-6);
  EXPECT_EQ(narrow.to(DType::f32).to(DType::bf16).to_vector(), back);
  EXPECT_THROW(narrow.data<float>(), Error);
}

TEST(Tensor, MismatchedShapesNameBothShapes) {
  Tensor a = Tensor::zeros(Shape{2, 3});
  Tensor b = Tensor::zeros(Shape{3, 2});
  try {
    add(a, b);
    FAIL() << "add accepted mismatched shapes";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[3, 2]"), std::string::npos) << msg;
  }
  Tensor x = Tensor::zeros(Shape{2, 4, 5});
  Tensor y = Tensor::zeros(Shape{2, 6, 7});
  try {
    matmul(x, y);
    FAIL() << "matmul accepted mismatched inner dimensions";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("[2, 4, 5]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 6, 7]"), std::string::npos) << msg;
  }
}

TEST(Allocator, PeakEqualsHandComputedBytes) {
  Allocator& cpu = allocator_for(Device::cpu);
  std::size_t base = cpu.live_bytes();
  cpu.reset_peak();
  EXPECT_EQ(cpu.peak_bytes(), base);
  {
    Tensor a = Tensor::empty(Shape{1000}, DType::f32);  // 4000 bytes
    Tensor b = Tensor::empty(Shape{25, 20}, DType::f64);  // 4000 bytes
    EXPECT_EQ(cpu.live_bytes(), base + 8000);
    Tensor view = a.reshape(Shape{10, 100});  // views allocate nothing
    EXPECT_EQ(cpu.live_bytes(), base + 8000);
    a = Tensor();
    view = Tensor();
    EXPECT_EQ(cpu.live_bytes(), base + 4000);
    Tensor c = Tensor::empty(Shape{100}, DType::f32);  // 400 bytes
    EXPECT_EQ(cpu.live_bytes(), base + 4400);
    EXPECT_EQ(cpu.peak_bytes(), base + 8000);
  }
  EXPECT_EQ(cpu.live_bytes(), base);
  EXPECT_EQ(cpu.peak_bytes(), base + 8000);
  cpu.reset_peak();
  EXPECT_EQ(cpu.peak_bytes(), base);
}

TEST(Allocator, OpOutputsAreCounted) {
  Allocator& cpu = allocator_for(Device::cpu);
  Tensor x = Tensor::zeros(Shape{4, 8}, DType::f64);
  Tensor gamma = Tensor::full(Shape{8}, 1.0, DType::f64);
  Tensor beta = Tensor::zeros(Shape{8}, DType::f64);
  std::size_t base = cpu.live_bytes();
  cpu.reset_peak();
  LayerNormResult r = layer_norm(x, gamma, beta);
  // y [4, 8] + mean [4] + rstd [4], all f64.
  EXPECT_EQ(cpu.live_bytes() - base, 4u * 8 * 8 + 4 * 8 + 4 * 8);
  EXPECT_EQ(cpu.peak_bytes() - base, 4u * 8 * 8 + 4 * 8 + 4 * 8);
}

}  // namespace
}  // namespace lra::core
