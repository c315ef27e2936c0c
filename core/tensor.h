#pragma once
// Tensor: row-major, contiguous, rank 0..4, f32/f64/bf16, on one device, sharing a buffer
// from that device's allocator. reshape() and slice() are views (no copy).
#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/error.h"

namespace lra::core {

class Shape {
 public:
  static constexpr int max_rank = 4;
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(const std::vector<int64_t>& dims);

  int rank() const { return rank_; }
  int64_t operator[](int i) const { return dims_[static_cast<std::size_t>(i)]; }
  int64_t& operator[](int i) { return dims_[static_cast<std::size_t>(i)]; }
  int64_t numel() const;
  std::vector<int64_t> to_vector() const { return {dims_.begin(), dims_.begin() + rank_}; }
  std::string str() const;  // "[2, 3, 4]"
  bool operator==(const Shape& other) const;
  bool operator!=(const Shape& other) const { return !(*this == other); }

 private:
  int rank_ = 0;
  std::array<int64_t, max_rank> dims_{};
};

struct Storage {
  void* data = nullptr;
  std::size_t bytes = 0;
  Device device = Device::cpu;
  Storage(std::size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

class Tensor {
 public:
  Tensor() = default;  // undefined: no storage
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32,
                     Device device = Device::cpu);
  // CPU tensor holding `values` (converted to dtype); values.size() must equal numel.
  static Tensor from_values(const Shape& shape, const std::vector<double>& values,
                            DType dtype = DType::f32);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  // Size of dimension i; negative i counts from the end.
  int64_t dim(int i) const;
  int64_t numel() const { return shape_.numel(); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::cpu; }
  std::size_t bytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }

  // Typed pointer to the first element; throws when T does not match dtype().
  template <typename T> T* data();
  template <typename T> const T* data() const;
  void* raw_data();
  const void* raw_data() const;

  Tensor reshape(const Shape& shape) const;  // view; numel must match
  Tensor slice(int64_t begin, int64_t end) const;  // view of rows [begin, end) along dim 0
  Tensor clone() const;
  Tensor to(DType dtype) const;    // copy converted to dtype, on the same device
  Tensor to(Device device) const;  // copy on another device (explicit host<->device copy)
  void fill(double value);
  // Copies src (same shape; any device; converts between f32, f64 and bf16, each value
  // rounded once to nearest, ties to even) into this tensor.
  void copy_from(const Tensor& src);

  // Slow element access for tests and small code paths (device tensors are copied).
  double at(std::initializer_list<int64_t> index) const;
  double item() const;  // numel must be 1
  std::vector<double> to_vector() const;
  std::string shape_str() const { return shape_.str(); }

 private:
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // in elements
  Shape shape_;
  DType dtype_ = DType::f32;
};

// Throws lra::Error naming both shapes when they differ.
void check_same_shape(const Tensor& a, const Tensor& b, const char* what);
void check_same_dtype(const Tensor& a, const Tensor& b, const char* what);
void check_rank(const Tensor& t, int min_rank, int max_rank, const char* what);
void check_cpu(const Tensor& t, const char* what);

template <typename T> T* Tensor::data() {
  LRA_CHECK(defined(), "data(): tensor is undefined");
  LRA_CHECK(dtype_of<T>() == dtype_, "data(): tensor holds {}, accessed as {}", dtype_name(dtype_),
            dtype_name(dtype_of<T>()));
  return static_cast<T*>(storage_->data) + offset_;
}
template <typename T> const T* Tensor::data() const {
  return const_cast<Tensor*>(this)->data<T>();
}

}  // namespace lra::core
