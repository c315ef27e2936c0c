// Launches of the training ops' CUDA kernels (core/cuda/train_op_kernels.cuh; see
// core/cuda/train_kernels.h). Every sum runs in a fixed order (no atomics), so every result
// is the same bits on every run.
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
#include "core/cuda/train_op_kernels.cuh"
#include "core/dispatch.h"

namespace lra::core::cuda {
namespace {

using train::grid_for;
using train::threads;

// The one explicit host -> device copy of an op's ids / labels. Asynchronous on the
// default stream (that of the kernels): the driver stages the pageable source before returning (so `src` may
// go), and the kernels that read `dst` are ordered after it on the same stream; this
// avoids cudaMemcpy's wait for all queued work (a host sync in mid-step).
template <typename T> void upload(Scratch& dst, const std::vector<T>& src) {
  if (src.empty()) return;
  LRA_CUDA_CHECK(cudaMemcpyAsync(dst.ptr, src.data(), sizeof(T) * src.size(),
                                 cudaMemcpyHostToDevice, 0));
}

}  // namespace

void add_bias_inplace(Tensor& x, const Tensor& bias) {
  if (x.numel() == 0) return;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    train::add_bias_kernel<T>
        <<<grid_for(x.numel()), threads>>>(x.data<T>(), bias.data<T>(), bias.dim(0), x.numel());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void embedding(const Tensor& table, const std::vector<int32_t>& ids, Tensor& y) {
  if (y.numel() == 0) return;
  Scratch dev_ids(sizeof(int32_t) * ids.size());
  upload(dev_ids, ids);
  LRA_DISPATCH_FLOAT(table.dtype(), T, [&] {
    train::gather_kernel<T><<<grid_for(y.numel()), threads>>>(
        table.data<T>(), dev_ids.as<int32_t>(), table.dim(1), y.numel(), y.data<T>());
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
  const train::ScatterPlan plan = train::scatter_plan(ids, dtable.dim(0));
  const int64_t chunks = plan.chunks, groups = plan.groups;
  // One buffer, one copy: perm | chunk_begin | gid | group_chunk.
  Scratch dev(sizeof(int32_t) * plan.packed.size());
  upload(dev, plan.packed);
  const int32_t* p_perm = dev.as<int32_t>();
  const int32_t* p_chunk = p_perm + plan.chunk_begin_at();
  const int32_t* p_gid = p_perm + plan.gid_at();
  const int32_t* p_group = p_perm + plan.group_chunk_at();
  LRA_DISPATCH_FLOAT(dy.dtype(), T, [&] {
    Scratch partial(sizeof(T) * static_cast<std::size_t>(chunks * c));
    train::scatter_chunks_kernel<T><<<grid_for(chunks * c), threads>>>(
        dy.data<T>(), p_perm, p_chunk, chunks, c, partial.as<T>());
    LRA_CUDA_CHECK_LAUNCH();
    train::scatter_groups_kernel<T><<<grid_for(groups * c), threads>>>(
        partial.as<T>(), p_gid, p_group, groups, c, dtable.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void add_positions(Tensor& x, const Tensor& pos) {
  if (x.numel() == 0) return;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    train::add_positions_kernel<T><<<grid_for(x.numel()), threads>>>(
        x.data<T>(), pos.data<T>(), x.dim(1) * x.dim(2), x.numel());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void add_positions_backward(const Tensor& dy, Tensor& dpos) {
  int64_t nc = dy.dim(1) * dy.dim(2);
  if (nc == 0) return;
  LRA_DISPATCH_FLOAT(dy.dtype(), T, [&] {
    train::add_positions_backward_kernel<T>
        <<<grid_for(nc), threads>>>(dy.data<T>(), dy.dim(0), nc, dpos.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void prepend_row(const Tensor& x, const Tensor& cls, Tensor& y) {
  if (y.numel() == 0) return;
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    train::prepend_kernel<T><<<grid_for(y.numel()), threads>>>(x.data<T>(), cls.data<T>(), x.dim(1),
                                                               x.dim(2), y.numel(), y.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void prepend_row_backward(const Tensor& dy, Tensor& dx, Tensor& dcls) {
  int64_t b = dy.dim(0), n = dy.dim(1) - 1, c = dy.dim(2);
  LRA_DISPATCH_FLOAT(dy.dtype(), T, [&] {
    if (dx.numel() > 0) {
      train::prepend_backward_dx_kernel<T>
          <<<grid_for(dx.numel()), threads>>>(dy.data<T>(), n, c, dx.numel(), dx.data<T>());
      LRA_CUDA_CHECK_LAUNCH();
    }
    if (c > 0) {
      train::prepend_backward_cls_kernel<T>
          <<<grid_for(c), threads>>>(dy.data<T>(), b, n, c, dcls.data<T>());
      LRA_CUDA_CHECK_LAUNCH();
    }
  });
}

void masked_mean(const Tensor& x, const Tensor& key_mask, Tensor& y) {
  if (y.numel() == 0) return;
  const void* mask = key_mask.defined() ? key_mask.raw_data() : nullptr;
  bool mf32 = key_mask.defined() && key_mask.dtype() == DType::f32;
  LRA_CHECK(x.dim(0) <= 65535, "masked_mean (cuda): batch {} exceeds the grid's 65535", x.dim(0));
  dim3 grid(train::mean_col_blocks(x.dim(2)), static_cast<unsigned>(x.dim(0)));
  LRA_DISPATCH_FLOAT(x.dtype(), T, [&] {
    train::masked_mean_kernel<T><<<grid, dim3(train::mean_cols, train::mean_groups)>>>(
        x.data<T>(), mask, mf32, x.dim(1), x.dim(2), y.data<T>());
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
  train::inverse_counts_kernel<><<<grid_for(b), threads>>>(count.as<int>(), b, inv.as<double>());
  LRA_CUDA_CHECK_LAUNCH();
  LRA_DISPATCH_FLOAT(dy.dtype(), T, [&] {
    train::masked_mean_backward_kernel<T><<<grid_for(dx.numel()), threads>>>(
        dy.data<T>(), mask, mf32, inv.as<double>(), n, c, dx.numel(), dx.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void pair_features(const Tensor& u, const Tensor& v, Tensor& y) {
  if (u.numel() == 0) return;
  LRA_DISPATCH_FLOAT(u.dtype(), T, [&] {
    train::pair_kernel<T><<<grid_for(u.numel()), threads>>>(u.data<T>(), v.data<T>(), u.dim(1),
                                                            u.numel(), y.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void pair_features_backward(const Tensor& u, const Tensor& v, const Tensor& dy, Tensor& du,
                            Tensor& dv) {
  if (u.numel() == 0) return;
  LRA_DISPATCH_FLOAT(u.dtype(), T, [&] {
    train::pair_backward_kernel<T><<<grid_for(u.numel()), threads>>>(
        u.data<T>(), v.data<T>(), dy.data<T>(), u.dim(1), u.numel(), du.data<T>(), dv.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void dropout_keep_mask(double p, uint64_t seed, uint64_t stream, Tensor& mask) {
  if (mask.numel() == 0) return;
  const uint64_t threshold = train::dropout_threshold(p);  // as on the CPU
  LRA_DISPATCH_FLOAT(mask.dtype(), T, [&] {
    train::keep_mask_kernel<T><<<grid_for((mask.numel() + 3) / 4), threads>>>(
        mask.data<T>(), mask.numel(), threshold, seed, stream, static_cast<T>(1.0 / (1.0 - p)));
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void bias_dropout_add(const Tensor& y, const Tensor& bias, const DropoutDraw& drop,
                      const Tensor& residual, Tensor& out) {
  const int64_t total = y.numel();
  const uint64_t threshold = train::dropout_threshold(drop.p);  // as on the CPU
  LRA_DISPATCH_FLOAT(y.dtype(), T, [&] {
    train::bias_dropout_add_kernel<T><<<grid_for((total + 3) / 4), threads>>>(
        y.data<T>(), bias.defined() ? bias.data<T>() : nullptr, y.dim(-1),
        residual.defined() ? residual.data<T>() : nullptr, total, drop.p > 0, threshold, drop.seed,
        drop.stream, static_cast<T>(1.0 / (1.0 - drop.p)), out.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void bias_gelu(const Tensor& h, const Tensor& bias, Tensor& g) {
  LRA_DISPATCH_FLOAT(h.dtype(), T, [&] {
    train::bias_gelu_kernel<T><<<grid_for(h.numel()), threads>>>(
        h.data<T>(), bias.data<T>(), bias.dim(0), h.numel(), g.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void bias_gelu_backward(const Tensor& h, const Tensor& bias, const Tensor& dg, Tensor& dz) {
  LRA_DISPATCH_FLOAT(h.dtype(), T, [&] {
    train::bias_gelu_backward_kernel<T><<<grid_for(h.numel()), threads>>>(
        h.data<T>(), bias.data<T>(), dg.data<T>(), bias.dim(0), h.numel(), dz.data<T>());
    LRA_CUDA_CHECK_LAUNCH();
  });
}

void bias_heads_first(const Tensor& y, const Tensor& bias, Tensor& out) {
  LRA_DISPATCH_FLOAT(y.dtype(), T, [&] {
    train::bias_heads_first_kernel<T><<<grid_for(out.numel()), threads>>>(
        y.data<T>(), bias.data<T>(), out.dim(1), out.dim(2), out.dim(3), out.numel(),
        out.data<T>());
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
    train::cross_entropy_kernel<T><<<grid_for(b), threads>>>(
        logits.data<T>(), dev_labels.as<int32_t>(), b, k, probs.data<T>(), out.as<double>());
    LRA_CUDA_CHECK_LAUNCH();
  });
  std::vector<double> host(static_cast<std::size_t>(2 * b));
  LRA_CUDA_CHECK(cudaMemcpy(host.data(), out.ptr, sizeof(double) * host.size(), cudaMemcpyDeviceToHost));
  return train::mean_loss_of_rows(host, b, correct);  // summed in row order, as on the CPU
}

void cross_entropy_stats(const Tensor& logits, const std::vector<int32_t>& labels, Tensor& probs,
                         Tensor& stats) {
  int64_t b = logits.dim(0), k = logits.dim(1);
  Scratch dev_labels(sizeof(int32_t) * labels.size());
  upload(dev_labels, labels);
  Scratch out(sizeof(double) * static_cast<std::size_t>(2 * b));
  if (b > 0) {
    LRA_DISPATCH_FLOAT(logits.dtype(), T, [&] {
      train::cross_entropy_kernel<T><<<grid_for(b), threads>>>(
          logits.data<T>(), dev_labels.as<int32_t>(), b, k, probs.data<T>(), out.as<double>());
      LRA_CUDA_CHECK_LAUNCH();
    });
  }
  train::sum_stats_kernel<><<<1, 1>>>(out.as<double>(), b, stats.data<double>());
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
    train::cross_entropy_backward_kernel<T><<<grid_for(probs.numel()), threads>>>(
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
