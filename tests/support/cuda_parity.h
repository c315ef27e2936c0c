#pragma once
// Fixture for CPU <-> CUDA parity tests, parameterised by dtype: skips (visibly) without a
// device, draws fresh inputs, poisons device allocations, compares results.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "core/cuda_runtime_info.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace lra::test {

class CudaParityTest : public ::testing::TestWithParam<core::DType> {
 protected:
  using Tensor = core::Tensor;
  using Shape = core::Shape;

  explicit CudaParityTest(uint64_t first_seed = 1) : seed_(first_seed) {}
  void SetUp() override {
    if (core::cuda_device_count() == 0)
      GTEST_SKIP() << "skipping GPU test: " << core::cuda_unavailable_reason();
  }
  core::DType dtype() const { return GetParam(); }
  double tol() const { return dtype() == core::DType::f64 ? 1e-11 : 1e-5; }

  Tensor randn(const Shape& shape, double scale = 1.0) {
    Tensor t = Tensor::empty(shape, dtype());
    core::fill_normal(t, seed_++, 0, 0.0, scale);
    return t;
  }
  static Tensor gpu(const Tensor& t) { return t.defined() ? t.to(core::Device::cuda) : Tensor(); }
  // The caching allocator hands exact sizes back: the next device allocation of this
  // shape starts as NaN, so an element a kernel forgets to write is caught.
  static void poison(const Shape& shape, core::DType dt) {
    Tensor junk = Tensor::empty(shape, dt, core::Device::cuda);
    junk.fill(std::numeric_limits<double>::quiet_NaN());
  }
  void poison(const Shape& shape) { poison(shape, dtype()); }

  // Max abs error relative to the largest CPU magnitude; non-finite CPU values must be
  // matched exactly (e.g. the -inf log-sum-exp of a fully padded sequence).
  void expect_close(const Tensor& device_result, const Tensor& cpu_result,
                    const std::string& what) {
    ASSERT_EQ(device_result.device(), core::Device::cuda) << what;
    ASSERT_EQ(device_result.shape(), cpu_result.shape()) << what;
    auto g = device_result.to_vector(), c = cpu_result.to_vector();
    double scale = 1e-30, err = 0;
    for (std::size_t i = 0; i < c.size(); ++i) {
      if (!std::isfinite(c[i])) {
        ASSERT_EQ(g[i], c[i]) << what << " element " << i;
        continue;
      }
      ASSERT_TRUE(std::isfinite(g[i])) << what << " element " << i << " is " << g[i];
      scale = std::max(scale, std::abs(c[i]));
      err = std::max(err, std::abs(g[i] - c[i]));
    }
    EXPECT_LE(err / scale, tol()) << what;
  }
  // Selections and copies must give the CPU's values bit for bit.
  static void expect_equal(const Tensor& device_result, const Tensor& cpu_result,
                           const std::string& what) {
    ASSERT_EQ(device_result.device(), core::Device::cuda) << what;
    ASSERT_EQ(device_result.shape(), cpu_result.shape()) << what;
    auto g = device_result.to_vector(), c = cpu_result.to_vector();
    for (std::size_t i = 0; i < c.size(); ++i)
      ASSERT_EQ(std::memcmp(&g[i], &c[i], sizeof(double)), 0)
          << what << " element " << i << ": " << g[i] << " vs " << c[i];
  }

  uint64_t seed_;
};

}  // namespace lra::test
