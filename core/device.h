#pragma once
// Devices and element types a Tensor can live on / hold.
#include <cstddef>
#include <string_view>

#include "core/bfloat16.h"

namespace lra::core {

enum class Device { cpu, cuda };
// bf16 is a storage type: ops that take it compute in fp32 (see core/bfloat16.h); the
// others reject it by name (LRA_DISPATCH_FLOAT).
enum class DType { f32, f64, bf16 };

constexpr std::size_t dtype_size(DType t) {
  return t == DType::f32 ? 4 : t == DType::f64 ? 8 : 2;
}
constexpr std::string_view dtype_name(DType t) {
  return t == DType::f32 ? "f32" : t == DType::f64 ? "f64" : "bf16";
}
constexpr std::string_view device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

// Parses "f32"/"float32"/"f64"/"float64"/"bf16"/"bfloat16"; throws lra::Error otherwise.
DType parse_dtype(std::string_view text);
// Parses "cpu"/"cuda"; throws lra::Error otherwise.
Device parse_device(std::string_view text);

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<bf16>() { return DType::bf16; }

}  // namespace lra::core
