// CUDA kernels of the training ops (see core/cuda/train_kernels.h). Every sum runs in a
// fixed order (no atomics), so every result is the same bits on every run.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/allocator.h"
#include "core/cuda/check.h"
#include "core/cuda/kernels.h"
#include "core/cuda/multi_tensor_kernels.cuh"
#include "core/cuda/scratch.h"
#include "core/cuda/train_kernels.h"
#include "core/dispatch.h"
#include "core/philox.h"

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

// The one explicit host -> device copy of an op's ids / labels. Asynchronous on the
// default stream (that of the kernels): the driver stages the pageable source before returning (so `src` may
// go), and the kernels that read `dst` are ordered after it on the same stream; this
// avoids cudaMemcpy's wait for all queued work (a host sync in mid-step).
template <typename T> void upload(Scratch& dst, const std::vector<T>& src) {
  if (src.empty()) return;
  LRA_CUDA_CHECK(cudaMemcpyAsync(dst.ptr, src.data(), sizeof(T) * src.size(),
                                 cudaMemcpyHostToDevice, 0));
}

__device__ inline double mask_value(const void* mask, bool f32, int64_t i) {
  return f32 ? static_cast<double>(static_cast<const float*>(mask)[i])
             : static_cast<const double*>(mask)[i];
}

template <typename T>
__global__ void add_bias_kernel(T* x, const T* bias, int64_t c, int64_t n) {
  LRA_GRID_STRIDE(i, n) x[i] += bias[i % c];
}

template <typename T>
__global__ void gather_kernel(const T* table, const int32_t* ids, int64_t c, int64_t n, T* y) {
  LRA_GRID_STRIDE(i, n) y[i] = table[static_cast<int64_t>(ids[i / c]) * c + i % c];
}

// Scatter-add without atomics, in two fixed-order passes. The rows are grouped by id
// (perm, increasing rows within an id) and each id's rows cut into chunks of at most
// scatter_chunk rows: pass 1 sums each chunk per column in row order, pass 2 adds an
// id's chunk sums in order onto dtable. The order depends only on ids: same bits every run.
constexpr int64_t scatter_chunk = 32;

template <typename T>
__global__ void scatter_chunks_kernel(const T* dy, const int32_t* perm, const int32_t* chunk_begin,
                                      int64_t chunks, int64_t c, T* partial) {
  LRA_GRID_STRIDE(e, chunks * c) {
    int64_t k = e / c, j = e % c;
    T acc = T(0);
    for (int32_t r = chunk_begin[k]; r < chunk_begin[k + 1]; ++r)
      acc += dy[static_cast<int64_t>(perm[r]) * c + j];
    partial[e] = acc;
  }
}

template <typename T>
__global__ void scatter_groups_kernel(const T* partial, const int32_t* gid,
                                      const int32_t* group_chunk, int64_t groups, int64_t c,
                                      T* dtable) {
  LRA_GRID_STRIDE(e, groups * c) {
    int64_t g = e / c, j = e % c;
    T* dst = dtable + static_cast<int64_t>(gid[g]) * c + j;
    T acc = *dst;
    for (int32_t k = group_chunk[g]; k < group_chunk[g + 1]; ++k)
      acc += partial[static_cast<int64_t>(k) * c + j];
    *dst = acc;
  }
}

template <typename T>
__global__ void add_positions_kernel(T* x, const T* pos, int64_t nc, int64_t total) {
  LRA_GRID_STRIDE(i, total) x[i] += pos[i % nc];
}

// dpos[t, j] += dy[b, t, j] over b in order (one thread per (t, j)).
template <typename T>
__global__ void add_positions_backward_kernel(const T* dy, int64_t b, int64_t nc, T* dpos) {
  LRA_GRID_STRIDE(e, nc) {
    T acc = dpos[e];
    for (int64_t i = 0; i < b; ++i) acc += dy[i * nc + e];
    dpos[e] = acc;
  }
}

template <typename T>
__global__ void prepend_kernel(const T* x, const T* cls, int64_t n, int64_t c, int64_t total, T* y) {
  LRA_GRID_STRIDE(e, total) {
    int64_t j = e % c, r = (e / c) % (n + 1), b = e / (c * (n + 1));
    y[e] = r == 0 ? cls[j] : x[(b * n + r - 1) * c + j];
  }
}

template <typename T>
__global__ void prepend_backward_dx_kernel(const T* dy, int64_t n, int64_t c, int64_t total, T* dx) {
  LRA_GRID_STRIDE(e, total) {
    int64_t j = e % c, r = (e / c) % n, b = e / (c * n);
    dx[e] = dy[(b * (n + 1) + r + 1) * c + j];
  }
}

template <typename T>
__global__ void prepend_backward_cls_kernel(const T* dy, int64_t b, int64_t n, int64_t c, T* dcls) {
  LRA_GRID_STRIDE(j, c) {
    T acc = T(0);
    for (int64_t i = 0; i < b; ++i) acc += dy[i * (n + 1) * c + j];
    dcls[j] = acc;
  }
}

// Block (32, 8) per (32 columns, sequence b): row group ty sums positions ty, ty + 8, ...
// in double, then the 8 partials are added in order (a fixed tree: deterministic).
template <typename T>
__global__ void masked_mean_kernel(const T* x, const void* mask, bool mf32, int64_t n, int64_t c,
                                   T* y) {
  __shared__ double sums[8][32];
  __shared__ double counts[8][32];
  int64_t i = blockIdx.y, j = blockIdx.x * 32 + threadIdx.x;
  double acc = 0, count = 0;
  for (int64_t t = threadIdx.y; t < n; t += 8) {
    if (mask && mask_value(mask, mf32, i * n + t) == 0) continue;
    count += 1;
    if (j < c) acc += static_cast<double>(x[(i * n + t) * c + j]);
  }
  sums[threadIdx.y][threadIdx.x] = acc;
  counts[threadIdx.y][threadIdx.x] = count;
  __syncthreads();
  if (threadIdx.y == 0 && j < c) {
    double total = 0, total_count = 0;
    for (int q = 0; q < 8; ++q) {
      total += sums[q][threadIdx.x];
      total_count += counts[q][threadIdx.x];
    }
    y[i * c + j] = static_cast<T>(total * (total_count > 0 ? 1.0 / total_count : 0.0));
  }
}

// inv[i] = 1 / count[i], 0 for a sequence without real tokens.
__global__ void inverse_counts_kernel(const int* count, int64_t b, double* inv) {
  LRA_GRID_STRIDE(i, b) inv[i] = count[i] > 0 ? 1.0 / count[i] : 0.0;
}

template <typename T>
__global__ void masked_mean_backward_kernel(const T* dy, const void* mask, bool mf32,
                                            const double* inv, int64_t n, int64_t c, int64_t total,
                                            T* dx) {
  LRA_GRID_STRIDE(e, total) {
    int64_t j = e % c, t = (e / c) % n, i = e / (c * n);
    bool real = !mask || mask_value(mask, mf32, i * n + t) != 0;
    dx[e] = real ? dy[i * c + j] * static_cast<T>(inv[i]) : T(0);
  }
}

template <typename T>
__global__ void pair_kernel(const T* u, const T* v, int64_t c, int64_t n, T* y) {
  LRA_GRID_STRIDE(e, n) {
    int64_t i = e / c, j = e % c;
    T a = u[e], w = v[e];
    T* row = y + i * 4 * c;
    row[j] = a;
    row[c + j] = w;
    row[2 * c + j] = a * w;
    row[3 * c + j] = a - w;
  }
}

template <typename T>
__global__ void pair_backward_kernel(const T* u, const T* v, const T* dy, int64_t c, int64_t n,
                                     T* du, T* dv) {
  LRA_GRID_STRIDE(e, n) {
    int64_t i = e / c, j = e % c;
    const T* g = dy + i * 4 * c;
    du[e] = g[j] + g[2 * c + j] * v[e] + g[3 * c + j];
    dv[e] = g[c + j] + g[2 * c + j] * u[e] - g[3 * c + j];
  }
}

template <typename T>
__global__ void keep_mask_kernel(T* mask, int64_t total, uint64_t threshold, uint64_t seed,
                                 uint64_t stream, T keep) {
  LRA_GRID_STRIDE(blk, (total + 3) / 4) {
    philox::Block bits = philox::philox4x32_10(
        static_cast<uint32_t>(blk), static_cast<uint32_t>(static_cast<uint64_t>(blk) >> 32),
        static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32),
        static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
    int64_t base = blk * 4;
    for (int q = 0; q < 4 && base + q < total; ++q)
      mask[base + q] = static_cast<uint64_t>(bits.v[q]) < threshold ? T(0) : keep;
  }
}

// One thread per row (K is the class count: small). out[2i] = loss_i, out[2i+1] = hit_i.
template <typename T>
__global__ void cross_entropy_kernel(const T* logits, const int32_t* labels, int64_t b, int64_t k,
                                     T* probs, double* out) {
  LRA_GRID_STRIDE(i, b) {
    const T* row = logits + i * k;
    int64_t arg = 0;
    for (int64_t j = 1; j < k; ++j)
      if (row[j] > row[arg]) arg = j;
    double mx = static_cast<double>(row[arg]), z = 0;
    for (int64_t j = 0; j < k; ++j) z += ::exp(static_cast<double>(row[j]) - mx);
    double log_z = mx + ::log(z);
    for (int64_t j = 0; j < k; ++j)
      probs[i * k + j] = static_cast<T>(::exp(static_cast<double>(row[j]) - log_z));
    int32_t label = labels[i];
    out[2 * i] = log_z - static_cast<double>(row[label]);
    out[2 * i + 1] = arg == label ? 1.0 : 0.0;
  }
}

__global__ void sum_stats_kernel(const double* rows, int64_t b, double* stats) {
  double loss = 0, hits = 0;
  for (int64_t i = 0; i < b; ++i) {
    loss += rows[2 * i];
    hits += rows[2 * i + 1];
  }
  stats[0] = loss;
  stats[1] = hits;
}

template <typename T>
__global__ void cross_entropy_backward_kernel(const T* probs, const int32_t* labels, int64_t k,
                                              int64_t total, T inv, T* dx) {
  LRA_GRID_STRIDE(e, total) {
    int64_t i = e / k, j = e % k;
    dx[e] = (probs[e] - (j == labels[i] ? T(1) : T(0))) * inv;
  }
}

}  // namespace

void add_bias_inplace(Tensor& x, const Tensor& bias) {
  if (x.numel() == 0) return;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    add_bias_kernel<T><<<grid_for(x.numel()), threads>>>(x.data<T>(), bias.data<T>(), bias.dim(0),
                                                         x.numel());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void embedding(const Tensor& table, const std::vector<int32_t>& ids, Tensor& y) {
  if (y.numel() == 0) return;
  Scratch dev_ids(sizeof(int32_t) * ids.size());
  upload(dev_ids, ids);
  LRA_DISPATCH_FLOAT(table.dtype(), T, [&] {
    gather_kernel<T><<<grid_for(y.numel()), threads>>>(table.data<T>(), dev_ids.as<int32_t>(),
                                                       table.dim(1), y.numel(), y.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void embedding_backward(const std::vector<int32_t>& ids, const Tensor& dy, Tensor& dtable) {
  int64_t c = dtable.dim(1), rows = static_cast<int64_t>(ids.size());
  if (rows == 0 || c == 0) return;
  LRA_CHECK(rows < (int64_t(1) << 31), "embedding_backward (cuda): {} ids exceed int32 indexing",
            rows);
  // Group the rows by id on the host (each id's rows stay in increasing order) and
  // cut each group into chunks: the summation order is a function of ids alone.
  // Counting sort by id (stable, O(rows + vocab)).
  std::vector<int32_t> offset(static_cast<std::size_t>(dtable.dim(0)) + 1, 0);
  for (int32_t id : ids) ++offset[static_cast<std::size_t>(id) + 1];
  for (std::size_t v = 1; v < offset.size(); ++v) offset[v] += offset[v - 1];
  std::vector<int32_t> perm(static_cast<std::size_t>(rows));
  for (int64_t r = 0; r < rows; ++r)
    perm[static_cast<std::size_t>(offset[static_cast<std::size_t>(ids[static_cast<std::size_t>(r)])]++)] =
        static_cast<int32_t>(r);
  std::vector<int32_t> chunk_begin, gid, group_chunk;
  for (int64_t k = 0; k < rows; ++k) {
    int32_t id = ids[static_cast<std::size_t>(perm[static_cast<std::size_t>(k)])];
    bool new_group = gid.empty() || gid.back() != id;
    if (new_group) {
      gid.push_back(id);
      group_chunk.push_back(static_cast<int32_t>(chunk_begin.size()));
    }
    if (new_group || k - chunk_begin.back() == scatter_chunk)
      chunk_begin.push_back(static_cast<int32_t>(k));
  }
  int64_t chunks = static_cast<int64_t>(chunk_begin.size());
  int64_t groups = static_cast<int64_t>(gid.size());
  chunk_begin.push_back(static_cast<int32_t>(rows));
  group_chunk.push_back(static_cast<int32_t>(chunks));
  // One buffer, one copy: perm | chunk_begin | gid | group_chunk.
  std::vector<int32_t> packed;
  packed.reserve(perm.size() + chunk_begin.size() + gid.size() + group_chunk.size());
  for (const auto* part : {&perm, &chunk_begin, &gid, &group_chunk})
    packed.insert(packed.end(), part->begin(), part->end());
  Scratch dev(sizeof(int32_t) * packed.size());
  upload(dev, packed);
  const int32_t* p_perm = dev.as<int32_t>();
  const int32_t* p_chunk = p_perm + rows;
  const int32_t* p_gid = p_chunk + chunks + 1;
  const int32_t* p_group = p_gid + groups;
  LRA_DISPATCH_FLOAT(dy.dtype(), T, [&] {
    Scratch partial(sizeof(T) * static_cast<std::size_t>(chunks * c));
    scatter_chunks_kernel<T><<<grid_for(chunks * c), threads>>>(dy.data<T>(), p_perm, p_chunk,
                                                                chunks, c, partial.as<T>());
    LRA_CUDA_CHECK_LAUNCH();
    scatter_groups_kernel<T><<<grid_for(groups * c), threads>>>(partial.as<T>(), p_gid, p_group,
                                                                groups, c, dtable.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void add_positions(Tensor& x, const Tensor& pos) {
  if (x.numel() == 0) return;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    add_positions_kernel<T><<<grid_for(x.numel()), threads>>>(x.data<T>(), pos.data<T>(),
                                                              x.dim(1) * x.dim(2), x.numel());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void add_positions_backward(const Tensor& dy, Tensor& dpos) {
  int64_t nc = dy.dim(1) * dy.dim(2);
  if (nc == 0) return;
  LRA_DISPATCH_FLOAT(dy.dtype(), T, [&] {
    add_positions_backward_kernel<T><<<grid_for(nc), threads>>>(dy.data<T>(), dy.dim(0), nc,
                                                                dpos.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void prepend_row(const Tensor& x, const Tensor& cls, Tensor& y) {
  if (y.numel() == 0) return;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    prepend_kernel<T><<<grid_for(y.numel()), threads>>>(x.data<T>(), cls.data<T>(), x.dim(1),
                                                        x.dim(2), y.numel(), y.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void prepend_row_backward(const Tensor& dy, Tensor& dx, Tensor& dcls) {
  int64_t b = dy.dim(0), n = dy.dim(1) - 1, c = dy.dim(2);
  LRA_DISPATCH_FLOAT(dy.dtype(), T, [&] {
    if (dx.numel() > 0) {
      prepend_backward_dx_kernel<T><<<grid_for(dx.numel()), threads>>>(dy.data<T>(), n, c,
                                                                       dx.numel(), dx.data<T>());
      LRA_CUDA_CHECK_LAUNCH();
    }
    if (c > 0) {
      prepend_backward_cls_kernel<T><<<grid_for(c), threads>>>(dy.data<T>(), b, n, c, dcls.data<T>());
      LRA_CUDA_CHECK_LAUNCH();
    }
  });
}

void masked_mean(const Tensor& x, const Tensor& key_mask, Tensor& y) {
  if (y.numel() == 0) return;
  const void* mask = key_mask.defined() ? key_mask.raw_data() : nullptr;
  bool mf32 = key_mask.defined() && key_mask.dtype() == DType::f32;
  LRA_CHECK(x.dim(0) <= 65535, "masked_mean (cuda): batch {} exceeds the grid's 65535", x.dim(0));
  dim3 grid(static_cast<unsigned>((x.dim(2) + 31) / 32), static_cast<unsigned>(x.dim(0)));
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    masked_mean_kernel<T><<<grid, dim3(32, 8)>>>(x.data<T>(), mask, mf32, x.dim(1), x.dim(2),
                                                 y.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void masked_mean_backward(const Tensor& dy, const Tensor& key_mask, Tensor& dx) {
  int64_t b = dx.dim(0), n = dx.dim(1), c = dx.dim(2);
  if (dx.numel() == 0) return;
  const void* mask = key_mask.defined() ? key_mask.raw_data() : nullptr;
  bool mf32 = key_mask.defined() && key_mask.dtype() == DType::f32;
  Scratch count(sizeof(int) * static_cast<std::size_t>(b));
  list_real_positions(key_mask, b, n, nullptr, count.as<int>());  // a prefix count per sequence
  Scratch inv(sizeof(double) * static_cast<std::size_t>(b));
  inverse_counts_kernel<<<grid_for(b), threads>>>(count.as<int>(), b, inv.as<double>());
  LRA_CUDA_CHECK_LAUNCH();
  LRA_DISPATCH_FLOAT(dy.dtype(), T, [&] {
    masked_mean_backward_kernel<T><<<grid_for(dx.numel()), threads>>>(
        dy.data<T>(), mask, mf32, inv.as<double>(), n, c, dx.numel(), dx.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void pair_features(const Tensor& u, const Tensor& v, Tensor& y) {
  if (u.numel() == 0) return;
  LRA_DISPATCH_FLOAT(u.dtype(), T, [&] {
    pair_kernel<T><<<grid_for(u.numel()), threads>>>(u.data<T>(), v.data<T>(), u.dim(1), u.numel(),
                                                     y.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void pair_features_backward(const Tensor& u, const Tensor& v, const Tensor& dy, Tensor& du,
                            Tensor& dv) {
  if (u.numel() == 0) return;
  LRA_DISPATCH_FLOAT(u.dtype(), T, [&] {
    pair_backward_kernel<T><<<grid_for(u.numel()), threads>>>(
        u.data<T>(), v.data<T>(), dy.data<T>(), u.dim(1), u.numel(), du.data<T>(), dv.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void dropout_keep_mask(double p, uint64_t seed, uint64_t stream, Tensor& mask) {
  if (mask.numel() == 0) return;
  auto threshold = static_cast<uint64_t>(std::ldexp(p, 32));  // as on the CPU
  LRA_DISPATCH_FLOAT(mask.dtype(), T, [&] {
    keep_mask_kernel<T><<<grid_for((mask.numel() + 3) / 4), threads>>>(
        mask.data<T>(), mask.numel(), threshold, seed, stream, static_cast<T>(1.0 / (1.0 - p)));
    LRA_CUDA_CHECK_LAUNCH();
  });
}

double cross_entropy(const Tensor& logits, const std::vector<int32_t>& labels, Tensor& probs,
                     int64_t& correct) {
  int64_t b = logits.dim(0), k = logits.dim(1);
  correct = 0;
  if (b == 0) return 0.0;
  Scratch dev_labels(sizeof(int32_t) * labels.size());
  upload(dev_labels, labels);
  Scratch out(sizeof(double) * static_cast<std::size_t>(2 * b));
  LRA_DISPATCH_FLOAT(logits.dtype(), T, [&] {
    cross_entropy_kernel<T><<<grid_for(b), threads>>>(logits.data<T>(), dev_labels.as<int32_t>(),
                                                      b, k, probs.data<T>(), out.as<double>());
    LRA_CUDA_CHECK_LAUNCH();
  });
  std::vector<double> host(static_cast<std::size_t>(2 * b));
  LRA_CUDA_CHECK(cudaMemcpy(host.data(), out.ptr, sizeof(double) * host.size(), cudaMemcpyDeviceToHost));
  double total = 0;  // summed in row order, as on the CPU
  for (int64_t i = 0; i < b; ++i) {
    total += host[static_cast<std::size_t>(2 * i)];
    if (host[static_cast<std::size_t>(2 * i + 1)] != 0) ++correct;
  }
  return total / static_cast<double>(b);
}

void cross_entropy_stats(const Tensor& logits, const std::vector<int32_t>& labels, Tensor& probs,
                         Tensor& stats) {
  int64_t b = logits.dim(0), k = logits.dim(1);
  Scratch dev_labels(sizeof(int32_t) * labels.size());
  upload(dev_labels, labels);
  Scratch out(sizeof(double) * static_cast<std::size_t>(2 * b));
  if (b > 0) {
    LRA_DISPATCH_FLOAT(logits.dtype(), T, [&] {
      cross_entropy_kernel<T><<<grid_for(b), threads>>>(logits.data<T>(), dev_labels.as<int32_t>(),
                                                        b, k, probs.data<T>(), out.as<double>());
      LRA_CUDA_CHECK_LAUNCH();
    });
  }
  sum_stats_kernel<<<1, 1>>>(out.as<double>(), b, stats.data<double>());
  LRA_CUDA_CHECK_LAUNCH();
}

void upload_async(const Tensor& src, Tensor& dst) {
  if (src.numel() == 0) return;
  LRA_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), src.bytes(),
                                 cudaMemcpyHostToDevice, 0));
}

void cross_entropy_backward(const Tensor& probs, const std::vector<int32_t>& labels, Tensor& dx) {
  int64_t b = probs.dim(0), k = probs.dim(1);
  if (probs.numel() == 0) return;
  Scratch dev_labels(sizeof(int32_t) * labels.size());
  upload(dev_labels, labels);
  LRA_DISPATCH_FLOAT(probs.dtype(), T, [&] {
    cross_entropy_backward_kernel<T><<<grid_for(probs.numel()), threads>>>(
        probs.data<T>(), dev_labels.as<int32_t>(), k, probs.numel(),
        static_cast<T>(1.0 / static_cast<double>(b)), dx.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

namespace {

// The sizes of `tensors`, for multi_tensor::plan.
template <typename P>
std::vector<int64_t> sizes_of(const std::vector<P>& tensors) {
  std::vector<int64_t> sizes;
  sizes.reserve(tensors.size());
  for (const Tensor* t : tensors) sizes.push_back(t->numel());
  return sizes;
}

int64_t blocks_of(const std::vector<multi_tensor::Launch>& plan) {
  int64_t total = 0;
  for (const multi_tensor::Launch& l : plan) total += l.blocks();
  return total;
}

// Queues the partial sums of squares of `tensors` (one dtype) and their first-chunk flags,
// one per block of `plan` (partial and first hold blocks_of(plan) each).
void queue_squares_partials(const std::vector<const Tensor*>& tensors,
                            const std::vector<multi_tensor::Launch>& plan, double* partial,
                            unsigned char* first) {
  if (plan.empty()) return;
  LRA_DISPATCH_FLOAT(tensors.front()->dtype(), T, [&] {
    static_assert(sizeof(multi_tensor::SquaresArgs<T>) <= 4000, "kernel parameters above 4 KiB");
    int64_t offset = 0;
    for (const multi_tensor::Launch& l : plan) {
      multi_tensor::SquaresArgs<T> a{};
      a.table = l.table;
      for (int s = 0; s < l.table.count; ++s) {
        const Tensor& x = *tensors[static_cast<std::size_t>(l.index[s])];
        a.x[s] = x.data<T>();
        a.n[s] = x.numel();
      }
      multi_tensor::squares_partials_kernel<T>
          <<<static_cast<unsigned>(l.blocks()), multi_tensor::threads>>>(a, partial + offset,
                                                                         first + offset);
      LRA_CUDA_CHECK_LAUNCH();
      offset += l.blocks();
    }
  });
}

}  // namespace

double sum_squares(const Tensor& x) {
  const std::vector<multi_tensor::Launch> plan =
      multi_tensor::plan({x.numel()}, multi_tensor::squares_chunk);
  const int64_t count = blocks_of(plan);
  Scratch partial(sizeof(double) * static_cast<std::size_t>(count));
  Scratch first(static_cast<std::size_t>(count));
  queue_squares_partials({&x}, plan, partial.as<double>(), first.as<unsigned char>());
  std::vector<double> host(static_cast<std::size_t>(count));
  if (count > 0)
    LRA_CUDA_CHECK(
        cudaMemcpy(host.data(), partial.ptr, sizeof(double) * host.size(), cudaMemcpyDeviceToHost));
  double total = 0;  // in chunk order, as norm_scale_kernel adds a tensor's partials
  for (double p : host) total += p;
  return total;
}

void global_norm_scale(const std::vector<const Tensor*>& tensors, double clip_norm,
                       Tensor& result) {
  const std::vector<multi_tensor::Launch> plan =
      multi_tensor::plan(sizes_of(tensors), multi_tensor::squares_chunk);
  const int64_t count = blocks_of(plan);
  Scratch partial(sizeof(double) * static_cast<std::size_t>(count));
  Scratch first(static_cast<std::size_t>(count));
  queue_squares_partials(tensors, plan, partial.as<double>(), first.as<unsigned char>());
  multi_tensor::norm_scale_kernel<><<<1, 1>>>(partial.as<double>(), first.as<unsigned char>(),
                                              count, clip_norm, result.data<double>());
  LRA_CUDA_CHECK_LAUNCH();
}

void adamw_update_all(const std::vector<Tensor*>& w, const std::vector<const Tensor*>& grads,
                      const std::vector<Tensor*>& m, const std::vector<Tensor*>& v,
                      const std::vector<bool>& decay, const AdamWParams& p,
                      const Tensor& grad_scale_device) {
  const std::vector<multi_tensor::Launch> plan =
      multi_tensor::plan(sizes_of(w), multi_tensor::adamw_chunk);
  if (plan.empty()) return;
  // Scalars computed on the host as the CPU kernel does.
  const double c1 = 1.0 - std::pow(p.beta1, static_cast<double>(p.step));
  const double c2 = 1.0 - std::pow(p.beta2, static_cast<double>(p.step));
  LRA_DISPATCH_FLOAT(w.front()->dtype(), T, [&] {
    static_assert(
        sizeof(multi_tensor::AdamWArgs<T>) + sizeof(multi_tensor::AdamWScalars<T>) <= 4000,
        "kernel parameters above 4 KiB");
    multi_tensor::AdamWScalars<T> c{};
    c.beta1 = static_cast<T>(p.beta1);
    c.beta2 = static_cast<T>(p.beta2);
    c.grad_scale = static_cast<T>(p.grad_scale);
    c.grad_scale_device = grad_scale_device.defined() ? grad_scale_device.data<double>() : nullptr;
    c.step_size = static_cast<T>(p.lr / c1);
    c.inv_c2 = static_cast<T>(1.0 / c2);
    c.eps = static_cast<T>(p.eps);
    for (const multi_tensor::Launch& l : plan) {
      multi_tensor::AdamWArgs<T> a{};
      a.table = l.table;
      for (int s = 0; s < l.table.count; ++s) {
        const auto i = static_cast<std::size_t>(l.index[s]);
        a.w[s] = w[i]->data<T>();
        a.g[s] = grads[i]->data<T>();
        a.m[s] = m[i]->data<T>();
        a.v[s] = v[i]->data<T>();
        a.n[s] = w[i]->numel();
        a.decay[s] = static_cast<T>(decay[i] ? p.lr * p.weight_decay : 0.0);
      }
      multi_tensor::adamw_kernel<T>
          <<<static_cast<unsigned>(l.blocks()), multi_tensor::threads>>>(a, c);
      LRA_CUDA_CHECK_LAUNCH();
    }
  });
}

}  // namespace lra::core::cuda
