#pragma once
// What the CUDA side of lra can see. Works in every build: without CUDA (LRA_CUDA=OFF
// or no nvcc) it reports that CUDA was not built.
#include <string>
#include <vector>

namespace lra::core {

bool cuda_built();
// Number of usable CUDA devices (0 when not built, no driver, or no device).
int cuda_device_count();
// One line per device ("NVIDIA H100 80GB HBM3, sm_90, 79 GiB"), empty when none.
std::vector<std::string> cuda_device_descriptions();
// Why no device is usable ("CUDA not built", "no CUDA device: ..."), empty when one is.
std::string cuda_unavailable_reason();

}  // namespace lra::core
