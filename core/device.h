#pragma once
// Devices and element types a Tensor can live on / hold.
#include <cstddef>
#include <string_view>

namespace lra::core {

enum class Device { cpu, cuda };
enum class DType { f32, f64 };

constexpr std::size_t dtype_size(DType t) { return t == DType::f32 ? 4 : 8; }
constexpr std::string_view dtype_name(DType t) { return t == DType::f32 ? "f32" : "f64"; }
constexpr std::string_view device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

// Parses "f32"/"float32"/"f64"/"float64"; throws lra::Error otherwise.
DType parse_dtype(std::string_view text);
// Parses "cpu"/"cuda"; throws lra::Error otherwise.
Device parse_device(std::string_view text);

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }

}  // namespace lra::core
