// Device timer (core/device_timer.h): the CPU path here; the CUDA event calls live in
// core/cuda/device_timer.cu, and a build without CUDA gets the error stubs below.
#include "core/device_timer.h"

#include "core/error.h"

namespace lra::core {

void device_synchronize(Device device) {
  if (device == Device::cuda) detail::cuda_synchronize();
}

DeviceTimer::DeviceTimer(Device device) : device_(device) {
  if (device_ == Device::cuda) {
    start_event_ = detail::cuda_event_create();
    try {
      stop_event_ = detail::cuda_event_create();
    } catch (...) {
      detail::cuda_event_destroy(start_event_);
      throw;
    }
  }
}

DeviceTimer::~DeviceTimer() {
  if (start_event_) detail::cuda_event_destroy(start_event_);
  if (stop_event_) detail::cuda_event_destroy(stop_event_);
}

void DeviceTimer::start() {
  started_ = true;
  if (device_ == Device::cuda)
    detail::cuda_event_record(start_event_);
  else
    begin_ = std::chrono::steady_clock::now();
}

double DeviceTimer::stop_ms() {
  LRA_CHECK(started_, "DeviceTimer ({}): stop_ms() without start()", device_name(device_));
  started_ = false;
  if (device_ == Device::cuda) {
    detail::cuda_event_record(stop_event_);
    return detail::cuda_event_elapsed_ms(start_event_, stop_event_);
  }
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin_)
      .count();
}

#ifndef LRA_WITH_CUDA
namespace detail {
namespace {
[[noreturn]] void not_built() {
  fail(
      "device timer: device cuda, but lra was built without CUDA (configure with "
      "-DLRA_CUDA=ON and nvcc present)");
}
}  // namespace
void* cuda_event_create() { not_built(); }
void cuda_event_destroy(void*) noexcept {}
void cuda_event_record(void*) { not_built(); }
double cuda_event_elapsed_ms(void*, void*) { not_built(); }
void cuda_synchronize() { not_built(); }
}  // namespace detail
#endif

}  // namespace lra::core
