#pragma once
// NumPy .npy files (format versions 1.0, 2.0 and 3.0): little-endian float32 ('<f4') or
// float64 ('<f8'), C order, rank 0..4. Anything else — Fortran order, big-endian, other
// dtypes, a malformed header, truncated or trailing data — is an lra::Error naming the
// file and what is wrong. This is how users exchange tensors with PyTorch/NumPy code.
#include <string>

#include "core/tensor.h"

namespace lra::core {

// Reads a whole .npy file into a CPU tensor of its dtype.
Tensor read_npy(const std::string& path);
// Parses .npy bytes; `name` is used in error messages.
Tensor parse_npy(const std::string& bytes, const std::string& name);
// Writes a CPU tensor (f32 -> '<f4', f64 -> '<f8') as format 1.0 (2.0 when the header
// needs it), written to a temporary file and renamed so readers never see a partial file.
void write_npy(const std::string& path, const Tensor& t);
// The .npy bytes of a tensor.
std::string to_npy_bytes(const Tensor& t);

}  // namespace lra::core
