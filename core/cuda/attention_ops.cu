// CUDA kernels of core/ops_attention.h (see core/cuda/attention_kernels.h).
#include <algorithm>
#include <cmath>

#include "core/cuda/attention_kernels.h"
#include "core/cuda/check.h"
#include "core/cuda/kernels.h"
#include "core/dispatch.h"

namespace lra::core::cuda {
namespace {

constexpr int threads = 256;

int grid_for(int64_t n) {
  int64_t blocks = (n + threads - 1) / threads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65535LL * 8)));
}

#define LRA_GRID_STRIDE(i, n)                                                   \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

__device__ inline bool keep_at(const void* mask, bool f32, int64_t i) {
  return f32 ? static_cast<const float*>(mask)[i] != 0.0f
             : static_cast<const double*>(mask)[i] != 0.0;
}

template <typename T> __device__ T sign_of(T x) { return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0)); }

template <typename T>
__global__ void unary_kernel(AttnUnary op, const T* x, int64_t n, T* y) {
  LRA_GRID_STRIDE(i, n) {
    T v = x[i];
    switch (op) {
      case AttnUnary::elu_plus_one: y[i] = v > T(0) ? v + T(1) : exp(v); break;
      case AttnUnary::exp: y[i] = exp(v); break;
      case AttnUnary::reciprocal_or_zero: y[i] = v != T(0) ? T(1) / v : T(0); break;
    }
  }
}

template <typename T>
__global__ void unary_backward_kernel(AttnUnary op, const T* p, const T* g, int64_t n, T* d) {
  LRA_GRID_STRIDE(i, n) {
    switch (op) {
      case AttnUnary::elu_plus_one: d[i] = p[i] > T(0) ? g[i] : g[i] * exp(p[i]); break;
      case AttnUnary::exp: d[i] = g[i] * p[i]; break;
      case AttnUnary::reciprocal_or_zero: d[i] = -g[i] * p[i] * p[i]; break;
    }
  }
}

// x viewed as rows (batch, head, seq) of `width`; identity_rows: set_rows_identity.
template <typename T>
__global__ void mask_rows_kernel(const T* x, const void* mask, bool mask_f32, int64_t heads,
                                 int64_t seq, int64_t width, int64_t total, bool identity_rows,
                                 T* y) {
  LRA_GRID_STRIDE(idx, total) {
    int64_t r = idx / width, c = idx % width;
    int64_t batch = r / (heads * seq), n = r % seq;
    if (keep_at(mask, mask_f32, batch * seq + n))
      y[idx] = x[idx];
    else
      y[idx] = (identity_rows && c == n) ? T(1) : T(0);
  }
}

// Shared layout per matrix: col sums [m], row sums [m], then reduction scratch [threads].
template <typename T>
__device__ void matrix_norms(const T* a, int64_t m, T* cols, T* rows, T& n1, int64_t& col,
                             T& ninf, int64_t& row) {
  // Same summation order as the CPU: each row sum over j, each column sum over i.
  for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
    T s = 0;
    for (int64_t j = 0; j < m; ++j) s += abs(a[i * m + j]);
    rows[i] = s;
  }
  for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
    T s = 0;
    for (int64_t i = 0; i < m; ++i) s += abs(a[i * m + j]);
    cols[j] = s;
  }
  __syncthreads();
  // First maximiser, as the CPU's strict > scan (m is the landmark count: small).
  ninf = T(-1);
  row = 0;
  n1 = T(-1);
  col = 0;
  for (int64_t i = 0; i < m; ++i)
    if (rows[i] > ninf) {
      ninf = rows[i];
      row = i;
    }
  for (int64_t j = 0; j < m; ++j)
    if (cols[j] > n1) {
      n1 = cols[j];
      col = j;
    }
}

template <typename T> __global__ void pinv_init_kernel(const T* a, int64_t m, T* z) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* cols = reinterpret_cast<T*>(smem);
  T* rows = cols + m;
  const T* x = a + blockIdx.x * m * m;
  T* out = z + blockIdx.x * m * m;
  T n1, ninf;
  int64_t col, row;
  matrix_norms(x, m, cols, rows, n1, col, ninf, row);
  T c = (n1 > T(0) && ninf > T(0)) ? T(1) / (n1 * ninf) : T(0);
  for (int64_t e = threadIdx.x; e < m * m; e += blockDim.x) {
    int64_t i = e / m, j = e % m;
    out[e] = c * x[j * m + i];
  }
}

template <typename T>
__global__ void pinv_init_backward_kernel(const T* a, const T* dz0, int64_t m, T* da) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* cols = reinterpret_cast<T*>(smem);
  T* rows = cols + m;
  T* red = rows + m;
  const T* x = a + blockIdx.x * m * m;
  const T* g = dz0 + blockIdx.x * m * m;
  T* d = da + blockIdx.x * m * m;
  T n1, ninf;
  int64_t col, row;
  matrix_norms(x, m, cols, rows, n1, col, ninf, row);
  if (!(n1 > T(0) && ninf > T(0))) {
    for (int64_t e = threadIdx.x; e < m * m; e += blockDim.x) d[e] = T(0);
    return;
  }
  T c = T(1) / (n1 * ninf);
  // dc = sum dZ0 ⊙ Aᵀ by a fixed tree (deterministic).
  T part = 0;
  for (int64_t e = threadIdx.x; e < m * m; e += blockDim.x) {
    int64_t i = e / m, j = e % m;
    part += g[j * m + i] * x[e];
  }
  red[threadIdx.x] = part;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  T dc = red[0];
  T dn1 = -dc * c / n1, dninf = -dc * c / ninf;
  for (int64_t e = threadIdx.x; e < m * m; e += blockDim.x) {
    int64_t i = e / m, j = e % m;
    T v = c * g[j * m + i];
    if (j == col) v += dn1 * sign_of(x[e]);
    if (i == row) v += dninf * sign_of(x[e]);
    d[e] = v;
  }
}

template <typename T>
__global__ void crop_kernel(const T* x, int64_t cols, int64_t out_cols, int64_t total, T* y) {
  LRA_GRID_STRIDE(e, total) y[e] = x[(e / out_cols) * cols + e % out_cols];
}

template <typename T>
__global__ void crop_backward_kernel(T* dx, int64_t cols, const T* dy, int64_t in_cols,
                                     int64_t total) {
  LRA_GRID_STRIDE(e, total) dx[(e / in_cols) * cols + e % in_cols] += dy[e];
}

template <typename T> __global__ void threshold_kernel(T* y, int64_t n, T thr, T keep) {
  LRA_GRID_STRIDE(i, n) y[i] = y[i] < thr ? T(0) : keep;
}

}  // namespace

void attn_unary(AttnUnary op, const Tensor& x, Tensor& y) {
  if (x.numel() == 0) return;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    unary_kernel<T><<<grid_for(x.numel()), threads>>>(op, x.data<T>(), x.numel(), y.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void attn_unary_backward(AttnUnary op, const Tensor& xy, const Tensor& dy, Tensor& dx) {
  if (xy.numel() == 0) return;
  LRA_DISPATCH_FLOAT(xy.dtype(), T, [&] {
    unary_backward_kernel<T><<<grid_for(xy.numel()), threads>>>(op, xy.data<T>(), dy.data<T>(),
                                                                xy.numel(), dx.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

namespace {
void mask_rows(const Tensor& x, const Tensor& mask, bool identity_rows, Tensor& y) {
  if (x.numel() == 0) return;
  int64_t heads = x.rank() == 3 ? 1 : x.dim(1), seq = x.dim(-2), width = x.dim(-1);
  bool mf32 = mask.dtype() == DType::f32;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    mask_rows_kernel<T><<<grid_for(x.numel()), threads>>>(x.data<T>(), mask.raw_data(), mf32,
                                                          heads, seq, width, x.numel(),
                                                          identity_rows, y.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}
}  // namespace

void mask_seq(const Tensor& x, const Tensor& key_mask, Tensor& y) { mask_rows(x, key_mask, false, y); }

void set_rows_identity(const Tensor& a, const Tensor& row_mask, Tensor& y) {
  mask_rows(a, row_mask, true, y);
}

namespace {
std::size_t pinv_shared_bytes(int64_t m, DType dtype) {
  std::size_t bytes = static_cast<std::size_t>(2 * m + threads) * dtype_size(dtype);
  int device = 0, limit = 0;
  LRA_CUDA_CHECK(cudaGetDevice(&device));
  LRA_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlock, device));
  LRA_CHECK(bytes <= static_cast<std::size_t>(limit),
            "pinv_init (cuda): matrices of {} x {} need {} bytes of shared memory, the device has {}",
            m, m, bytes, limit);
  return bytes;
}
}  // namespace

void pinv_init(const Tensor& a, Tensor& z0) {
  int64_t m = a.dim(-1);
  int64_t mats = m ? a.numel() / (m * m) : 0;
  if (mats == 0) return;
  std::size_t shared = pinv_shared_bytes(m, a.dtype());
  LRA_DISPATCH_FLOAT(a.dtype(), T, [&] {
    pinv_init_kernel<T><<<static_cast<unsigned>(mats), threads, shared>>>(a.data<T>(), m, z0.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void pinv_init_backward(const Tensor& a, const Tensor& dz0, Tensor& da) {
  int64_t m = a.dim(-1);
  int64_t mats = m ? a.numel() / (m * m) : 0;
  if (mats == 0) return;
  std::size_t shared = pinv_shared_bytes(m, a.dtype());
  LRA_DISPATCH_FLOAT(a.dtype(), T, [&] {
    pinv_init_backward_kernel<T><<<static_cast<unsigned>(mats), threads, shared>>>(
        a.data<T>(), dz0.data<T>(), m, da.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void crop2d(const Tensor& x, Tensor& y) {
  if (y.numel() == 0) return;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    crop_kernel<T><<<grid_for(y.numel()), threads>>>(x.data<T>(), x.dim(1), y.dim(1), y.numel(),
                                                     y.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void crop2d_backward_add(Tensor& dx, const Tensor& dy) {
  if (dy.numel() == 0) return;
  LRA_DISPATCH_FLOAT(dx.dtype(), T, [&] {
    crop_backward_kernel<T><<<grid_for(dy.numel()), threads>>>(dx.data<T>(), dx.dim(1),
                                                               dy.data<T>(), dy.dim(1), dy.numel());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void attn_dropout_mask(double p, uint64_t seed, uint64_t offset, Tensor& y) {
  if (y.numel() == 0) return;
  cuda::fill_uniform(y, seed, offset, 0.0, 1.0);  // the same draws as core::fill_uniform on the CPU
  LRA_DISPATCH_FLOAT(y.dtype(), T, [&] {
    threshold_kernel<T><<<grid_for(y.numel()), threads>>>(
        y.data<T>(), y.numel(), static_cast<T>(p), static_cast<T>(1.0 / (1.0 - p)));
    LRA_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace lra::core::cuda
