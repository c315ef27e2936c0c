#include "core/tensor.h"

#include <cstring>

#include "core/allocator.h"
#ifdef LRA_WITH_CUDA
#include "core/cuda/kernels.h"
#endif

namespace lra::core {

namespace {
// Element i of a CPU buffer of dtype t, as a double (exact for every dtype).
double load_element(DType t, const void* p, int64_t i) {
  switch (t) {
    case DType::f32: return static_cast<const float*>(p)[i];
    case DType::f64: return static_cast<const double*>(p)[i];
    case DType::bf16: return to_float(static_cast<const bf16*>(p)[i]);
  }
  return 0.0;
}

// Stores value rounded once to dtype t (to nearest, ties to even).
void store_element(DType t, void* p, int64_t i, double value) {
  switch (t) {
    case DType::f32: static_cast<float*>(p)[i] = static_cast<float>(value); return;
    case DType::f64: static_cast<double*>(p)[i] = value; return;
    case DType::bf16: static_cast<bf16*>(p)[i] = to_bf16(value); return;
  }
}
}  // namespace

DType parse_dtype(std::string_view text) {
  if (text == "f32" || text == "float32" || text == "fp32") return DType::f32;
  if (text == "f64" || text == "float64" || text == "fp64") return DType::f64;
  if (text == "bf16" || text == "bfloat16") return DType::bf16;
  fail("unknown dtype '{}' (expected f32, f64 or bf16)", text);
}

Device parse_device(std::string_view text) {
  if (text == "cpu") return Device::cpu;
  if (text == "cuda" || text == "gpu") return Device::cuda;
  fail("unknown device '{}' (expected cpu or cuda)", text);
}

Shape::Shape(std::initializer_list<int64_t> dims) : Shape(std::vector<int64_t>(dims)) {}

Shape::Shape(const std::vector<int64_t>& dims) {
  LRA_CHECK(dims.size() <= max_rank, "shape of rank {} exceeds the maximum rank {}", dims.size(),
            max_rank);
  rank_ = static_cast<int>(dims.size());
  for (int i = 0; i < rank_; ++i) {
    LRA_CHECK(dims[static_cast<std::size_t>(i)] >= 0, "negative dimension {} in shape",
              dims[static_cast<std::size_t>(i)]);
    dims_[static_cast<std::size_t>(i)] = dims[static_cast<std::size_t>(i)];
  }
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<std::size_t>(i)];
  return n;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < rank_; ++i) {
    if (i) s += ", ";
    s += std::to_string(dims_[static_cast<std::size_t>(i)]);
  }
  return s + "]";
}

bool Shape::operator==(const Shape& other) const {
  if (rank_ != other.rank_) return false;
  for (int i = 0; i < rank_; ++i)
    if (dims_[static_cast<std::size_t>(i)] != other.dims_[static_cast<std::size_t>(i)]) return false;
  return true;
}

Storage::Storage(std::size_t n, Device d) : bytes(n), device(d) {
  data = allocator_for(d).allocate(n);
}

Storage::~Storage() { allocator_for(device).deallocate(data, bytes); }

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(static_cast<std::size_t>(shape.numel()) * dtype_size(dtype),
                                         device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill(value);
  return t;
}

Tensor Tensor::from_values(const Shape& shape, const std::vector<double>& values, DType dtype) {
  LRA_CHECK(static_cast<int64_t>(values.size()) == shape.numel(),
            "from_values: {} values for shape {} ({} elements)", values.size(), shape.str(),
            shape.numel());
  Tensor t = empty(shape, dtype);
  for (std::size_t i = 0; i < values.size(); ++i) {
    store_element(dtype, t.raw_data(), static_cast<int64_t>(i), values[i]);
  }
  return t;
}

int64_t Tensor::dim(int i) const {
  int r = rank();
  int j = i < 0 ? i + r : i;
  LRA_CHECK(j >= 0 && j < r, "dim({}) out of range for tensor of shape {}", i, shape_.str());
  return shape_[j];
}

void* Tensor::raw_data() {
  LRA_CHECK(defined(), "raw_data(): tensor is undefined");
  return static_cast<char*>(storage_->data) + offset_ * static_cast<int64_t>(dtype_size(dtype_));
}
const void* Tensor::raw_data() const { return const_cast<Tensor*>(this)->raw_data(); }

Tensor Tensor::reshape(const Shape& shape) const {
  LRA_CHECK(shape.numel() == numel(), "reshape: cannot view shape {} ({} elements) as {} ({})",
            shape_.str(), numel(), shape.str(), shape.numel());
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  LRA_CHECK(rank() >= 1, "slice: tensor of shape {} has no dimension 0", shape_.str());
  LRA_CHECK(0 <= begin && begin <= end && end <= shape_[0],
            "slice: range [{}, {}) out of bounds for shape {}", begin, end, shape_.str());
  Tensor t = *this;
  t.shape_[0] = end - begin;
  t.offset_ += begin * (shape_[0] ? numel() / shape_[0] : 0);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(DType dtype) const {
  Tensor t = empty(shape_, dtype, device());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(Device target) const {
  Tensor t = empty(shape_, dtype_, target);
  t.copy_from(*this);
  return t;
}

void Tensor::fill(double value) {
  LRA_CHECK(defined(), "fill: tensor is undefined");
  if (device() == Device::cuda) {
#ifdef LRA_WITH_CUDA
    cuda::fill(*this, value);
    return;
#endif
  }
  int64_t n = numel();
  void* p = raw_data();
  for (int64_t i = 0; i < n; ++i) store_element(dtype_, p, i, value);
}

void Tensor::copy_from(const Tensor& src) {
  check_same_shape(*this, src, "copy_from");
  if (numel() == 0) return;
  if (dtype_ == src.dtype_) {
    copy_bytes(raw_data(), device(), src.raw_data(), src.device(), bytes());
    return;
  }
  if (device() != src.device()) {  // move first, then convert on the target device
    copy_from(src.to(device()));
    return;
  }
  if (device() == Device::cuda) {
#ifdef LRA_WITH_CUDA
    cuda::convert(src, *this);
    return;
#endif
  }
  int64_t n = numel();
  const void* s = src.raw_data();
  void* d = raw_data();
  for (int64_t i = 0; i < n; ++i) store_element(dtype_, d, i, load_element(src.dtype_, s, i));
}

double Tensor::at(std::initializer_list<int64_t> index) const {
  if (device() != Device::cpu) return to(Device::cpu).at(index);
  LRA_CHECK(static_cast<int>(index.size()) == rank(), "at: {} indices for tensor of shape {}",
            index.size(), shape_.str());
  int64_t flat = 0;
  int i = 0;
  for (int64_t ix : index) {
    LRA_CHECK(ix >= 0 && ix < shape_[i], "at: index {} out of range in dim {} of shape {}", ix, i,
              shape_.str());
    flat = flat * shape_[i] + ix;
    ++i;
  }
  return load_element(dtype_, raw_data(), flat);
}

double Tensor::item() const {
  LRA_CHECK(numel() == 1, "item: tensor of shape {} has {} elements", shape_.str(), numel());
  if (device() != Device::cpu) return to(Device::cpu).item();
  return load_element(dtype_, raw_data(), 0);
}

std::vector<double> Tensor::to_vector() const {
  if (device() != Device::cpu) return to(Device::cpu).to_vector();
  std::vector<double> out(static_cast<std::size_t>(numel()));
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = load_element(dtype_, raw_data(), static_cast<int64_t>(i));
  return out;
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* what) {
  LRA_CHECK(a.shape() == b.shape(), "{}: shapes {} and {} differ", what, a.shape_str(),
            b.shape_str());
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* what) {
  LRA_CHECK(a.dtype() == b.dtype(), "{}: dtypes {} and {} differ", what, dtype_name(a.dtype()),
            dtype_name(b.dtype()));
}

void check_rank(const Tensor& t, int min_rank, int max_rank, const char* what) {
  LRA_CHECK(t.defined(), "{}: tensor is undefined", what);
  LRA_CHECK(t.rank() >= min_rank && t.rank() <= max_rank,
            "{}: expected a tensor of rank {}..{}, got shape {}", what, min_rank, max_rank,
            t.shape_str());
}

void check_cpu(const Tensor& t, const char* what) {
  LRA_CHECK(t.device() == Device::cpu, "{}: tensor is on {}, this path needs cpu", what,
            device_name(t.device()));
}

}  // namespace lra::core
