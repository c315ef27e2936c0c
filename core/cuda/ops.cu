// CUDA kernels behind core/ops.h (see core/cuda/kernels.h). Every reduction uses a fixed
// tree over a fixed partition, so results do not depend on scheduling.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/allocator.h"
#include "core/cuda/block_reduce.cuh"
#include "core/cuda/check.h"
#include "core/cuda/conv_kernels.cuh"
#include "core/cuda/gelu.cuh"
#include "core/cuda/kernels.h"
#include "core/cuda/row_kernels.cuh"
#include "core/cuda/scratch.h"
#include "core/cuda/segment_kernels.cuh"
#include "core/dispatch.h"
#include "core/philox.h"
#include "core/precision.h"

namespace lra::core::cuda {
namespace {

constexpr int block_threads = 256;

int grid_for(int64_t n) {
  int64_t blocks = (n + block_threads - 1) / block_threads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65535LL * 8)));
}

template <typename T> const T* cptr(const Tensor& t) { return t.data<T>(); }
template <typename T> T* mptr(Tensor& t) { return t.data<T>(); }

// ------------------------------------------------------------------ GEMM (cuBLAS)
cublasHandle_t handle() {
  static cublasHandle_t h = [] {
    cublasHandle_t created;
    LRA_CUBLAS_CHECK(cublasCreate(&created));
    return created;
  }();
  return h;
}

template <typename T>
void gemm_batched(cublasOperation_t opb, cublasOperation_t opa, int n, int m, int k, T alpha,
                  const T* b, int ldb, long long sb, const T* a, int lda, long long sa, T beta, T* c,
                  int ldc, long long sc, int count) {
  if constexpr (sizeof(T) == 4) {
    // fp32 storage; the products in fp32 or on TF32 tensor cores (core/precision.h).
    const cublasComputeType_t compute = matmul_precision() == MatmulPrecision::tf32
                                            ? CUBLAS_COMPUTE_32F_FAST_TF32
                                            : CUBLAS_COMPUTE_32F;
    LRA_CUBLAS_CHECK(cublasGemmStridedBatchedEx(handle(), opb, opa, n, m, k, &alpha, b, CUDA_R_32F,
                                                ldb, sb, a, CUDA_R_32F, lda, sa, &beta, c,
                                                CUDA_R_32F, ldc, sc, count, compute,
                                                CUBLAS_GEMM_DEFAULT));
  } else {
    LRA_CUBLAS_CHECK(cublasDgemmStridedBatched(handle(), opb, opa, n, m, k, &alpha, b, ldb, sb, a,
                                               lda, sa, &beta, c, ldc, sc, count));
  }
}

// c[e] = beta c[e] + the sum over j < count of products[j][e], in j order (beta = 0 never
// reads c, which may hold anything).
template <typename T>
__global__ void add_products_kernel(const T* products, int64_t count, int64_t size, T beta, T* c) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < size;
       e += int64_t(gridDim.x) * blockDim.x) {
    T s = beta == T(0) ? T(0) : beta * c[e];
    for (int64_t j = 0; j < count; ++j) s += products[j * size + e];
    c[e] = s;
  }
}

constexpr int64_t row_chunk = 256;

// partial[chunk, c] = sum over the chunk's rows of f(row, c); one thread per column.
template <typename T>
__global__ void ln_param_partials(const T* x, const T* mean, const T* rstd, const T* dy,
                                  int64_t rows, int64_t cols, T* partial_g, T* partial_b) {
  int64_t chunk = blockIdx.y;
  for (int64_t c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += gridDim.x * blockDim.x) {
    T sg = 0, sb = 0;
    for (int64_t r = chunk * row_chunk; r < min(rows, (chunk + 1) * row_chunk); ++r) {
      T d = dy[r * cols + c];
      if (x) sg += d * (x[r * cols + c] - mean[r]) * rstd[r];
      sb += d;
    }
    if (partial_g) partial_g[chunk * cols + c] = sg;
    partial_b[chunk * cols + c] = sb;
  }
}

template <typename T>
__global__ void sum_chunks(const T* partial, int64_t chunks, int64_t cols, T* out) {
  for (int64_t c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += gridDim.x * blockDim.x) {
    T s = 0;
    for (int64_t k = 0; k < chunks; ++k) s += partial[k * cols + c];
    out[c] = s;
  }
}

// ------------------------------------------------------------------ elementwise
template <typename T> __global__ void unary_kernel(int op, const T* x, int64_t n, T* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = op == 0 ? gelu_value(x[i]) : (x[i] > T(0) ? x[i] : T(0));
}

template <typename T>
__global__ void unary_backward_kernel(int op, const T* x, const T* dy, int64_t n, T* dx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = op == 0 ? dy[i] * gelu_slope(x[i]) : (x[i] > T(0) ? dy[i] : T(0));
}

template <typename T> __global__ void binary_kernel(int op, const T* a, const T* b, int64_t n, T* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = op == 0 ? a[i] + b[i] : op == 1 ? a[i] - b[i] : a[i] * b[i];
}

template <typename T> __global__ void axpby_kernel(T* y, T beta, const T* x, T alpha, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    T base = beta == T(0) ? T(0) : beta * y[i];  // beta 0 never reads y (may be garbage)
    y[i] = x ? base + alpha * x[i] : base;
  }
}

template <typename T>
__global__ void add_bias_kernel(const T* x, const T* bias, int64_t n, int64_t cols, T* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = x[i] + bias[i % cols];
}

template <typename T>
__global__ void scale_rows_kernel(const T* x, const T* s, int64_t n, int64_t cols, T* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = x[i] * s[i / cols];
}

// out[r] = alpha * sum over the row of a (times b when given): a warp or a block per row.
template <typename T>
void launch_row_reduce(const T* a, const T* b, int64_t rows, int64_t cols, T alpha, T* out) {
  if (rows_per_warp(cols))
    row_reduce_kernel<T, true><<<row_blocks(rows, cols), row_block_threads>>>(a, b, rows, cols, alpha, out);
  else
    row_reduce_kernel<T, false><<<row_blocks(rows, cols), row_block_threads>>>(a, b, rows, cols, alpha, out);
  LRA_CUDA_CHECK_LAUNCH();
}

template <typename T>
__global__ void broadcast_rows_kernel(const T* v, T alpha, int64_t n, int64_t cols, T* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = alpha * v[i / cols];
}

constexpr int64_t sum_chunk = 8192;

template <typename T> __global__ void sum_partials_kernel(const T* x, int64_t n, double* partial) {
  __shared__ double shared[block_threads];
  int64_t begin = blockIdx.x * sum_chunk;
  double s = 0;
  for (int64_t i = begin + threadIdx.x; i < min(n, begin + sum_chunk); i += blockDim.x) s += x[i];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

template <typename T>
__global__ void transpose12_kernel(const T* x, int64_t d1, int64_t d2, int64_t d3, int64_t n, T* y) {
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < n; o += int64_t(gridDim.x) * blockDim.x) {
    // y index (i, k, j, l) over [d0, d2, d1, d3] from x (i, j, k, l) over [d0, d1, d2, d3].
    int64_t l = o % d3, rest = o / d3;
    int64_t j = rest % d1;
    rest /= d1;
    int64_t k = rest % d2, i = rest / d2;
    y[o] = x[((i * d1 + j) * d2 + k) * d3 + l];
  }
}

// ------------------------------------------------------------------ plumbing
template <typename T> __global__ void fill_kernel(T* y, T value, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = value;
}

// Conversions through double, which holds every f32 and bf16 exactly: each value is rounded
// once, as Tensor::copy_from does on the CPU.
__device__ inline double widen(float x) { return x; }
__device__ inline double widen(double x) { return x; }
__device__ inline double widen(bf16 x) { return to_float(x); }
template <typename D> __device__ D narrow(double x) { return static_cast<D>(x); }
template <> __device__ bf16 narrow<bf16>(double x) { return to_bf16(x); }

template <typename S, typename D> __global__ void convert_kernel(const S* x, int64_t n, D* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = narrow<D>(widen(x[i]));
}

template <typename S> void convert_from(const S* x, int64_t n, Tensor& dst) {
  switch (dst.dtype()) {
    case DType::f32:
      convert_kernel<S, float><<<grid_for(n), block_threads>>>(x, n, dst.data<float>());
      break;
    case DType::f64:
      convert_kernel<S, double><<<grid_for(n), block_threads>>>(x, n, dst.data<double>());
      break;
    case DType::bf16:
      convert_kernel<S, bf16><<<grid_for(n), block_threads>>>(x, n, dst.data<bf16>());
      break;
  }
  LRA_CUDA_CHECK_LAUNCH();
}

template <typename T>
__global__ void uniform_kernel(T* out, int64_t n, uint64_t seed, uint64_t offset, double lo, double hi) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t j = offset + static_cast<uint64_t>(i);
    uint32_t bits = philox::stream_block(seed, j / 4, philox::uniform_tag).v[j % 4];
    T v = static_cast<T>(lo + (hi - lo) * (static_cast<double>(bits) * 0x1p-32));
    if (v >= static_cast<T>(hi)) v = nextafter(static_cast<T>(hi), static_cast<T>(lo));
    out[i] = v;
  }
}

template <typename T>
__global__ void normal_kernel(T* out, int64_t n, uint64_t seed, uint64_t offset, double mean, double stddev) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t j = offset + static_cast<uint64_t>(i);
    philox::Block b = philox::stream_block(seed, j / 2, philox::normal_tag);
    double u0 = (static_cast<double>(b.v[0]) + 0.5) * 0x1p-32;
    double u1 = (static_cast<double>(b.v[1]) + 0.5) * 0x1p-32;
    double radius = sqrt(-2.0 * log(u0));
    double angle = 2.0 * 3.14159265358979323846 * u1;
    double z = (j % 2 == 0) ? radius * cos(angle) : radius * sin(angle);
    out[i] = static_cast<T>(mean + stddev * z);
  }
}

}  // namespace

// ================================================================== entry points
void gemm(const Tensor& a, bool ta, const Tensor& b, bool tb, Tensor& c, double alpha, double beta,
          int64_t m, int64_t n, int64_t k, int64_t pa, int64_t pb, int64_t pc) {
  // Row-major C = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ: swap the operands.
  cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  int lda = static_cast<int>(ta ? m : k), ldb = static_cast<int>(tb ? k : n), ldc = static_cast<int>(n);
  int64_t p = std::max({pa, pb, pc});
  LRA_DISPATCH_FLOAT(c.dtype(), T, [&] {
    const T* ap = cptr<T>(a);
    const T* bp = cptr<T>(b);
    T* cp = mptr<T>(c);
    if (pc == 1 && p > 1) {
      // One output summed over the batch (e.g. the gradient of a weight shared by every
      // batch entry): the products of up to `group` entries by one strided call into a
      // scratch buffer of at most 32 MiB, then added into c in batch order by one kernel.
      // Deterministic; it was one cuBLAS call per entry (64 launches for Linformer's E at
      // B = 32, H = 2).
      const int64_t mn = m * n;
      if (mn == 0) return;
      const int64_t budget = int64_t{32} << 20;
      const int64_t group = std::clamp<int64_t>(budget / (mn * static_cast<int64_t>(sizeof(T))), 1, p);
      Scratch products(static_cast<std::size_t>(group * mn) * sizeof(T));
      for (int64_t i0 = 0; i0 < p; i0 += group) {
        const int64_t g = std::min(group, p - i0);
        gemm_batched<T>(opb, opa, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k),
                        static_cast<T>(alpha), bp + (pb == 1 ? 0 : i0 * k * n), ldb,
                        pb == 1 ? 0 : k * n, ap + (pa == 1 ? 0 : i0 * m * k), lda,
                        pa == 1 ? 0 : m * k, T(0), products.as<T>(), ldc, mn, static_cast<int>(g));
        add_products_kernel<T><<<grid_for(mn), block_threads>>>(
            products.as<T>(), g, mn, i0 == 0 ? static_cast<T>(beta) : T(1), cp);
        LRA_CUDA_CHECK_LAUNCH();
      }
      return;
    }
    gemm_batched<T>(opb, opa, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k),
                    static_cast<T>(alpha), bp, ldb, pb == 1 ? 0 : k * n, ap, lda,
                    pa == 1 ? 0 : m * k, static_cast<T>(beta), cp, ldc, m * n, static_cast<int>(p));
  });
}

void softmax(const Tensor& x, const Tensor& key_mask, double scale, Tensor& y) {
  int64_t cols = x.dim(-1), rows = cols ? x.numel() / cols : 0;
  if (rows == 0) return;
  const void* mask = key_mask.defined() ? key_mask.raw_data() : nullptr;
  bool mask_f32 = key_mask.defined() && key_mask.dtype() == DType::f32;
  int64_t rows_per_batch = key_mask.defined() ? rows / key_mask.dim(0) : rows;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    if (rows_per_warp(cols)) {
      softmax_kernel<T, true><<<row_blocks(rows, cols), block_threads>>>(
          cptr<T>(x), mask, mask_f32, rows, rows_per_batch, cols, static_cast<T>(scale), mptr<T>(y));
    } else {
      softmax_kernel<T, false><<<row_blocks(rows, cols), block_threads>>>(
          cptr<T>(x), mask, mask_f32, rows, rows_per_batch, cols, static_cast<T>(scale), mptr<T>(y));
    }
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void softmax_backward(const Tensor& y, const Tensor& dy, double scale, Tensor& dx) {
  int64_t cols = y.dim(-1), rows = cols ? y.numel() / cols : 0;
  if (rows == 0) return;
  LRA_DISPATCH_FLOAT(y.dtype(), T, [&] {
    if (rows_per_warp(cols)) {
      softmax_backward_kernel<T, true><<<row_blocks(rows, cols), block_threads>>>(
          cptr<T>(y), cptr<T>(dy), rows, cols, static_cast<T>(scale), mptr<T>(dx));
    } else {
      softmax_backward_kernel<T, false><<<row_blocks(rows, cols), block_threads>>>(
          cptr<T>(y), cptr<T>(dy), rows, cols, static_cast<T>(scale), mptr<T>(dx));
    }
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, Tensor& y,
                Tensor& mean, Tensor& rstd) {
  int64_t cols = x.dim(-1), rows = cols ? x.numel() / cols : 0;
  if (rows == 0) return;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    if (rows_per_warp(cols)) {
      layer_norm_kernel<T, true><<<row_blocks(rows, cols), block_threads>>>(
          cptr<T>(x), cptr<T>(gamma), cptr<T>(beta), rows, cols, static_cast<T>(eps), mptr<T>(y),
          mptr<T>(mean), mptr<T>(rstd));
    } else {
      layer_norm_kernel<T, false><<<row_blocks(rows, cols), block_threads>>>(
          cptr<T>(x), cptr<T>(gamma), cptr<T>(beta), rows, cols, static_cast<T>(eps), mptr<T>(y),
          mptr<T>(mean), mptr<T>(rstd));
    }
    LRA_CUDA_CHECK_LAUNCH();
  });
}

namespace {
// Column sums over rows in fixed chunks (deterministic): out_b = sum dy, out_g = sum dy * xhat.
template <typename T>
void column_sums(const T* x, const T* mean, const T* rstd, const T* dy, int64_t rows, int64_t cols,
                 T* out_g, T* out_b) {
  if (cols == 0) return;  // nothing to sum into (a zero-width grid is a launch error)
  int64_t chunks = std::max<int64_t>(1, (rows + row_chunk - 1) / row_chunk);
  Scratch partial(static_cast<std::size_t>(2 * chunks * cols) * sizeof(T));
  T* pg = partial.as<T>();
  T* pb = pg + chunks * cols;
  dim3 grid(static_cast<unsigned>((cols + block_threads - 1) / block_threads), static_cast<unsigned>(chunks));
  ln_param_partials<T><<<grid, block_threads>>>(x, mean, rstd, dy, rows, cols, out_g ? pg : nullptr, pb);
  LRA_CUDA_CHECK_LAUNCH();
  if (out_g) sum_chunks<T><<<grid_for(cols), block_threads>>>(pg, chunks, cols, out_g);
  sum_chunks<T><<<grid_for(cols), block_threads>>>(pb, chunks, cols, out_b);
  LRA_CUDA_CHECK_LAUNCH();
}
}  // namespace

void layer_norm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean,
                         const Tensor& rstd, const Tensor& dy, const Tensor& residual, Tensor& dx,
                         Tensor& dgamma, Tensor& dbeta) {
  int64_t cols = x.dim(-1), rows = cols ? x.numel() / cols : 0;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    const T* res = residual.defined() ? residual.data<T>() : nullptr;
    if (rows > 0) {
      if (rows_per_warp(cols)) {
        layer_norm_dx_kernel<T, true><<<row_blocks(rows, cols), block_threads>>>(
            cptr<T>(x), cptr<T>(gamma), cptr<T>(mean), cptr<T>(rstd), cptr<T>(dy),
            res, rows, cols, mptr<T>(dx));
      } else {
        layer_norm_dx_kernel<T, false><<<row_blocks(rows, cols), block_threads>>>(
            cptr<T>(x), cptr<T>(gamma), cptr<T>(mean), cptr<T>(rstd), cptr<T>(dy),
            res, rows, cols, mptr<T>(dx));
      }
      LRA_CUDA_CHECK_LAUNCH();
    }
    column_sums<T>(cptr<T>(x), cptr<T>(mean), cptr<T>(rstd), cptr<T>(dy), rows, cols,
                   mptr<T>(dgamma), mptr<T>(dbeta));
  });
}

void unary(Unary op, const Tensor& x, Tensor& y) {
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    unary_kernel<T><<<grid_for(x.numel()), block_threads>>>(op == Unary::gelu ? 0 : 1, cptr<T>(x),
                                                            x.numel(), mptr<T>(y));
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void unary_backward(Unary op, const Tensor& x, const Tensor& dy, Tensor& dx) {
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    unary_backward_kernel<T><<<grid_for(x.numel()), block_threads>>>(
        op == Unary::gelu ? 0 : 1, cptr<T>(x), cptr<T>(dy), x.numel(), mptr<T>(dx));
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void binary(Binary op, const Tensor& a, const Tensor& b, Tensor& y) {
  int code = op == Binary::add ? 0 : op == Binary::sub ? 1 : 2;
  LRA_DISPATCH_FLOAT(a.dtype(), T, [&] {
    binary_kernel<T><<<grid_for(a.numel()), block_threads>>>(code, cptr<T>(a), cptr<T>(b), a.numel(),
                                                             mptr<T>(y));
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void axpby(Tensor& y, double beta, const Tensor& x, double alpha) {
  LRA_DISPATCH_FLOAT(y.dtype(), T, [&] {
    axpby_kernel<T><<<grid_for(y.numel()), block_threads>>>(
        mptr<T>(y), static_cast<T>(beta), x.defined() ? cptr<T>(x) : nullptr, static_cast<T>(alpha),
        y.numel());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void add_bias(const Tensor& x, const Tensor& bias, Tensor& y) {
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    add_bias_kernel<T><<<grid_for(x.numel()), block_threads>>>(cptr<T>(x), cptr<T>(bias), x.numel(),
                                                               x.dim(-1), mptr<T>(y));
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void scale_rows(const Tensor& x, const Tensor& s, Tensor& y) {
  int64_t cols = x.numel() / s.numel();
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    scale_rows_kernel<T><<<grid_for(x.numel()), block_threads>>>(cptr<T>(x), cptr<T>(s), x.numel(),
                                                                 cols, mptr<T>(y));
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void row_dot(const Tensor& a, const Tensor& b, Tensor& out) {
  int64_t rows = out.numel(), cols = rows ? a.numel() / rows : 0;
  if (rows == 0) return;
  LRA_DISPATCH_FLOAT(a.dtype(), T, [&] {
    launch_row_reduce<T>(cptr<T>(a), cptr<T>(b), rows, cols, T(1), mptr<T>(out));
  });
}

double sum_all(const Tensor& x) {
  int64_t n = x.numel();
  if (n == 0) return 0.0;
  int64_t chunks = (n + sum_chunk - 1) / sum_chunk;
  Scratch partial(static_cast<std::size_t>(chunks) * sizeof(double));
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    sum_partials_kernel<T><<<static_cast<unsigned>(chunks), block_threads>>>(cptr<T>(x), n,
                                                                             partial.as<double>());
    LRA_CUDA_CHECK_LAUNCH();
  });
  std::vector<double> host(static_cast<std::size_t>(chunks));
  LRA_CUDA_CHECK(cudaMemcpy(host.data(), partial.ptr, partial.bytes, cudaMemcpyDeviceToHost));
  double total = 0;
  for (double p : host) total += p;
  return total;
}

void sum_rows(const Tensor& x, double alpha, Tensor& y) {
  int64_t rows = y.numel(), cols = x.dim(-1);
  if (rows == 0) return;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    launch_row_reduce<T>(cptr<T>(x), nullptr, rows, cols, static_cast<T>(alpha), mptr<T>(y));
  });
}

void broadcast_rows(const Tensor& v, double alpha, Tensor& y) {
  int64_t cols = v.numel() ? y.numel() / v.numel() : 0;
  LRA_DISPATCH_FLOAT(y.dtype(), T, [&] {
    broadcast_rows_kernel<T><<<grid_for(y.numel()), block_threads>>>(
        cptr<T>(v), static_cast<T>(alpha), y.numel(), cols, mptr<T>(y));
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void sum_leading(const Tensor& x, Tensor& y) {
  int64_t cols = y.numel(), rows = cols ? x.numel() / cols : 0;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    column_sums<T>(nullptr, nullptr, nullptr, cptr<T>(x), rows, cols, nullptr, mptr<T>(y));
  });
}

void transpose12(const Tensor& x, Tensor& y) {
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    transpose12_kernel<T><<<grid_for(x.numel()), block_threads>>>(cptr<T>(x), x.dim(1), x.dim(2),
                                                                  x.dim(3), x.numel(), mptr<T>(y));
    LRA_CUDA_CHECK_LAUNCH();
  });
}

namespace {
struct SeqDims {
  int64_t batch, heads, seq, width;
};
SeqDims seq_dims(const Tensor& x) {
  if (x.rank() == 3) return {x.dim(0), 1, x.dim(1), x.dim(2)};
  return {x.dim(0), x.dim(1), x.dim(2), x.dim(3)};
}
}  // namespace

// Device lists of each sequence's real positions (all positions without a mask) and
// their counts, shared by segment means and its backward.
class RealPositions {
 public:
  RealPositions(const Tensor& key_mask, int64_t batch, int64_t seq)
      : buffer_(static_cast<std::size_t>(batch * seq + batch) * sizeof(int)), batch_seq_(batch * seq) {
    list_real_positions(key_mask, batch, seq, buffer_.as<int>(), buffer_.as<int>() + batch_seq_);
  }
  const int* positions() { return buffer_.as<int>(); }
  const int* counts() { return buffer_.as<int>() + batch_seq_; }

 private:
  Scratch buffer_;
  int64_t batch_seq_;
};

void list_real_positions(const Tensor& key_mask, int64_t batch, int64_t seq, int* positions,
                         int* count) {
  if (batch == 0) return;
  real_positions_kernel<<<static_cast<unsigned>(batch), real_positions_threads>>>(
      key_mask.defined() ? key_mask.raw_data() : nullptr,
      key_mask.defined() && key_mask.dtype() == DType::f32, seq, positions, count);
  LRA_CUDA_CHECK_LAUNCH();
}

void segment_means(const Tensor& x, int64_t m, const Tensor& key_mask, Tensor& means,
                   Tensor& counts) {
  SeqDims s = seq_dims(x);
  RealPositions real(key_mask, s.batch, s.seq);
  const int* pos = real.positions();
  const int* count = real.counts();
  if (s.batch * s.heads * m == 0) return;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    segment_means_kernel<T><<<static_cast<unsigned>(s.batch * s.heads * m), 64>>>(
        cptr<T>(x), pos, count, s.heads, s.seq, s.width, m, mptr<T>(means), mptr<T>(counts));
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void segment_means_backward_add(Tensor& dx, const Tensor& d_means, const Tensor& key_mask) {
  SeqDims s = seq_dims(dx);
  int64_t m = d_means.dim(-2);
  RealPositions real(key_mask, s.batch, s.seq);
  const int* pos = real.positions();
  const int* count = real.counts();
  if (s.batch * s.heads * m == 0) return;
  LRA_DISPATCH_FLOAT(dx.dtype(), T, [&] {
    segment_means_backward_kernel<T><<<static_cast<unsigned>(s.batch * s.heads * m), 64>>>(
        cptr<T>(d_means), pos, count, s.heads, s.seq, s.width, m, mptr<T>(dx));
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void depthwise_conv_seq(const Tensor& x, const Tensor& w, const Tensor& key_mask, bool accumulate,
                        Tensor& y) {
  const void* mask = key_mask.defined() ? key_mask.raw_data() : nullptr;
  bool mask_f32 = key_mask.defined() && key_mask.dtype() == DType::f32;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    conv_kernel<T><<<grid_for(x.numel()), block_threads>>>(
        cptr<T>(x), cptr<T>(w), mask, mask_f32, x.dim(1), x.dim(2), x.dim(3), w.dim(1), x.numel(),
        false, accumulate, mptr<T>(y));
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void depthwise_conv_seq_backward(const Tensor& x, const Tensor& w, const Tensor& dy,
                                 const Tensor& key_mask, bool accumulate, Tensor& dx, Tensor& dw) {
  const void* mask = key_mask.defined() ? key_mask.raw_data() : nullptr;
  bool mask_f32 = key_mask.defined() && key_mask.dtype() == DType::f32;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    conv_kernel<T><<<grid_for(x.numel()), block_threads>>>(
        cptr<T>(dy), cptr<T>(w), mask, mask_f32, x.dim(1), x.dim(2), x.dim(3), w.dim(1), x.numel(),
        true, accumulate, mptr<T>(dx));
    LRA_CUDA_CHECK_LAUNCH();
    if (w.numel() == 0) return;
    const ConvDwSplit split = conv_dw_split(x.dim(0) * x.dim(2), w.numel());
    Scratch partial(static_cast<std::size_t>(w.numel() * split.chunks) * sizeof(T));
    conv_dw_partial_kernel<T><<<static_cast<unsigned>(w.numel() * split.chunks), block_threads>>>(
        cptr<T>(x), cptr<T>(dy), mask, mask_f32, x.dim(0), x.dim(1), x.dim(2), x.dim(3), w.dim(1),
        split, partial.as<T>());
    LRA_CUDA_CHECK_LAUNCH();
    conv_dw_finish_kernel<T><<<grid_for(w.numel()), block_threads>>>(
        partial.as<T>(), w.numel(), split.chunks, accumulate, mptr<T>(dw));
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void fill(Tensor& t, double value) {
  if (t.numel() == 0) return;
  if (t.dtype() == DType::bf16) {
    fill_kernel<bf16><<<grid_for(t.numel()), block_threads>>>(t.data<bf16>(), to_bf16(value), t.numel());
    LRA_CUDA_CHECK_LAUNCH();
    return;
  }
  LRA_DISPATCH_FLOAT(t.dtype(), T, [&] {
    fill_kernel<T><<<grid_for(t.numel()), block_threads>>>(mptr<T>(t), static_cast<T>(value), t.numel());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void convert(const Tensor& src, Tensor& dst) {
  if (src.numel() == 0) return;
  switch (src.dtype()) {
    case DType::f32: return convert_from(src.data<float>(), src.numel(), dst);
    case DType::f64: return convert_from(src.data<double>(), src.numel(), dst);
    case DType::bf16: return convert_from(src.data<bf16>(), src.numel(), dst);
  }
}

void fill_uniform(Tensor& t, uint64_t seed, uint64_t offset, double lo, double hi) {
  if (t.numel() == 0) return;
  LRA_DISPATCH_FLOAT(t.dtype(), T, [&] {
    uniform_kernel<T><<<grid_for(t.numel()), block_threads>>>(mptr<T>(t), t.numel(), seed, offset, lo, hi);
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void fill_normal(Tensor& t, uint64_t seed, uint64_t offset, double mean, double stddev) {
  if (t.numel() == 0) return;
  LRA_DISPATCH_FLOAT(t.dtype(), T, [&] {
    normal_kernel<T><<<grid_for(t.numel()), block_threads>>>(mptr<T>(t), t.numel(), seed, offset, mean, stddev);
    LRA_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace lra::core::cuda
