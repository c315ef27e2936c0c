// core::DeviceTimer: the CPU path everywhere; on a GPU, CUDA events around queued kernels
// (the timer must wait for them). Without a GPU the CUDA timer fails with a clear error.
#include "core/device_timer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/cuda_runtime_info.h"
#include "core/ops.h"
#include "core/tensor.h"

namespace lra::core {
namespace {

TEST(DeviceTimer, CpuTimesAndRequiresStart) {
  DeviceTimer timer(Device::cpu);
  EXPECT_THROW(timer.stop_ms(), Error);
  timer.start();
  Tensor a = Tensor::full(Shape{64, 64}, 1.0, DType::f64);
  Tensor c = matmul(a, a);
  double ms = timer.stop_ms();
  EXPECT_TRUE(std::isfinite(ms));
  EXPECT_GE(ms, 0.0);
  EXPECT_EQ(c.at({3, 5}), 64.0);
  EXPECT_THROW(timer.stop_ms(), Error);  // one stop per start
  device_synchronize(Device::cpu);       // a no-op, never an error
}

TEST(DeviceTimer, CudaWithoutDeviceIsAClearError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  try {
    DeviceTimer timer(Device::cuda);
    FAIL() << "a CUDA timer was created without a device";
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_TRUE(what.find("cuda") != std::string::npos || what.find("CUDA") != std::string::npos)
        << what;
  }
}

TEST(DeviceTimer, CudaEventsWaitForTheTimedKernels) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "skipping GPU test: " << cuda_unavailable_reason();
  Tensor a = Tensor::full(Shape{2048, 2048}, 1.0, DType::f32, Device::cuda);
  DeviceTimer timer(Device::cuda);
  timer.start();
  Tensor c = matmul(a, a);
  for (int i = 0; i < 4; ++i) c = matmul(c, a, false, false, 1.0 / 2048);
  double ms = timer.stop_ms();
  EXPECT_TRUE(std::isfinite(ms));
  EXPECT_GT(ms, 0.0);  // five 2048^3 GEMMs cannot take zero device time
  EXPECT_EQ(c.at({7, 9}), 2048.0);
  device_synchronize(Device::cuda);
}

}  // namespace
}  // namespace lra::core
