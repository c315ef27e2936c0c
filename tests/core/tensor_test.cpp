#include <gtest/gtest.h>

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
