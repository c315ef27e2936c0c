#pragma once
// Checked CUDA runtime / cuBLAS calls: a failure throws lra::Error naming the call,
// the file and the line.
#include <cublas_v2.h>
#include <cstddef>
#include <cuda_runtime.h>

namespace lra::core::cuda {

[[noreturn]] void throw_cuda_error(const char* call, const char* file, int line, const char* name,
                                   const char* message);

// The most dynamic shared memory one thread block may opt in to on the current device
// (227 KiB on the H100; less on older or smaller GPUs), queried once.
std::size_t max_shared_bytes_per_block();

}  // namespace lra::core::cuda

#define LRA_CUDA_CHECK(call)                                                                \
  do {                                                                                      \
    cudaError_t lra_status_ = (call);                                                       \
    if (lra_status_ != cudaSuccess)                                                         \
      ::lra::core::cuda::throw_cuda_error(#call, __FILE__, __LINE__,                        \
                                          cudaGetErrorName(lra_status_),                    \
                                          cudaGetErrorString(lra_status_));                 \
  } while (0)

#define LRA_CUBLAS_CHECK(call)                                                              \
  do {                                                                                      \
    cublasStatus_t lra_status_ = (call);                                                    \
    if (lra_status_ != CUBLAS_STATUS_SUCCESS)                                               \
      ::lra::core::cuda::throw_cuda_error(#call, __FILE__, __LINE__,                        \
                                          cublasGetStatusName(lra_status_),                 \
                                          cublasGetStatusString(lra_status_));              \
  } while (0)

// After a kernel launch: checks the launch itself (asynchronous errors surface later).
#define LRA_CUDA_CHECK_LAUNCH() LRA_CUDA_CHECK(cudaGetLastError())
