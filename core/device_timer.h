#pragma once
// Timing and synchronisation of work on a device, for benchmarks (`lra sweep`). On the
// CPU a call has finished when it returns: the timer is the steady clock. On CUDA,
// kernels run asynchronously: the timer records CUDA events on the default stream (which
// every lra kernel and cuBLAS call uses) around the timed region and waits for the stop
// event, so the time is the device's and nothing is left running. Memory comes from the
// device's allocator (core/allocator.h: live/peak bytes of tensor buffers), the same
// accounting on every device.
#include <chrono>

#include "core/device.h"

namespace lra::core {

// Waits until every queued operation on `device` has finished (no-op on the CPU).
void device_synchronize(Device device);

class DeviceTimer {
 public:
  explicit DeviceTimer(Device device);
  ~DeviceTimer();
  DeviceTimer(const DeviceTimer&) = delete;
  DeviceTimer& operator=(const DeviceTimer&) = delete;

  Device device() const { return device_; }
  // Marks the start of the timed region (after the work queued so far).
  void start();
  // Marks the end, waits for the region's work to finish and returns its duration in
  // milliseconds. Throws lra::Error when start() was not called first.
  double stop_ms();

 private:
  Device device_;
  bool started_ = false;
  std::chrono::steady_clock::time_point begin_{};
  void* start_event_ = nullptr;  // cudaEvent_t on CUDA
  void* stop_event_ = nullptr;
};

namespace detail {
// CUDA halves of the timer (core/cuda/device_timer.cu; without CUDA they throw).
void* cuda_event_create();
void cuda_event_destroy(void* event) noexcept;
void cuda_event_record(void* event);
double cuda_event_elapsed_ms(void* start, void* stop);  // synchronises on stop
void cuda_synchronize();
}  // namespace detail

}  // namespace lra::core
