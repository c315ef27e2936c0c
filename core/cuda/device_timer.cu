// CUDA events behind core::DeviceTimer (core/device_timer.h), on the default stream.
#include "core/cuda/check.h"
#include "core/device_timer.h"

namespace lra::core::detail {

void* cuda_event_create() {
  cudaEvent_t event = nullptr;
  LRA_CUDA_CHECK(cudaEventCreate(&event));
  return event;
}

void cuda_event_destroy(void* event) noexcept {
  // Destructor path: a failure here cannot be reported (and leaves nothing to clean).
  cudaEventDestroy(static_cast<cudaEvent_t>(event));
}

void cuda_event_record(void* event) {
  LRA_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), 0));
}

double cuda_event_elapsed_ms(void* start, void* stop) {
  LRA_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(stop)));
  float ms = 0;
  LRA_CUDA_CHECK(
      cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(stop)));
  return static_cast<double>(ms);
}

void cuda_synchronize() { LRA_CUDA_CHECK(cudaDeviceSynchronize()); }

}  // namespace lra::core::detail
