#pragma once
// Precision of f32 matrix products on CUDA: full fp32 (the default) or TF32 on tensor cores
// (inputs rounded to 10-bit mantissas, products accumulated in fp32), as PyTorch's
// allow_tf32. It applies to cuBLAS GEMMs and to the flash softmax forward. Process-wide;
// f64 and every CPU computation stay exact.
namespace lra::core {

enum class MatmulPrecision { fp32, tf32 };

void set_matmul_precision(MatmulPrecision precision);
MatmulPrecision matmul_precision();
const char* matmul_precision_name(MatmulPrecision precision);

// Sets a precision for its lifetime, then restores the one before.
class ScopedMatmulPrecision {
 public:
  explicit ScopedMatmulPrecision(MatmulPrecision precision) : before_(matmul_precision()) {
    set_matmul_precision(precision);
  }
  ~ScopedMatmulPrecision() { set_matmul_precision(before_); }
  ScopedMatmulPrecision(const ScopedMatmulPrecision&) = delete;
  ScopedMatmulPrecision& operator=(const ScopedMatmulPrecision&) = delete;

 private:
  MatmulPrecision before_;
};

}  // namespace lra::core
