// The CUDA kernels of the training ops (core/cuda/train_op_kernels.cuh: bias, embedding
// gather and scatter, positions, CLS row, masked mean, pair features, dropout mask,
// cross-entropy), their source compiled as host C++ and run on the CPU under
// tests/support/cuda_emulation.h (a thread per CUDA thread), against the CPU ops of
// core/ops_train.h. Each kernel runs with the launch geometry of core/cuda/train_ops.cu
// (the same host helpers: grid_for, scatter_plan, mean_col_blocks, ...), and the
// grid-stride kernels once more on a 2 x 32 grid whose loop takes several passes. Where
// train_ops.cu uploads host vectors (ids, labels, the scatter plan), the emulated kernel
// reads the same host data. Copies, single adds, the position and CLS scatter-adds
// (core/cuda/train_kernels.h: the CPU's order) and the Philox dropout draws must match the
// CPU bit for bit; sums in another order within 1e-11 (f64) / 1e-5 (f32) relative.
#include "tests/support/cuda_emulation.h"

#include "core/cuda/segment_kernels.cuh"
#include "core/cuda/train_op_kernels.cuh"

#include <gtest/gtest.h>

#include "tests/support/attention_masks.h"
#include "tests/support/emulation_checks.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/ops_train.h"

namespace lra::core {
namespace {

using test::rel_error;

template <typename T>
constexpr double tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-11;
}

template <typename T>
Tensor randn(const Shape& shape, uint64_t seed, double scale = 1.0) {
  return test::emulation_randn(shape, seed, dtype_of<T>(), scale);
}

// A tensor of `shape` full of NaN: an element the kernel should write but does not shows.
template <typename T>
Tensor poisoned(const Shape& shape) {
  return Tensor::full(shape, std::numeric_limits<double>::quiet_NaN(), dtype_of<T>());
}

// Same dtype, shape and bytes.
bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.bytes()) == 0;
}

// A grid-stride kernel over `items` items as train_ops.cu launches it (grid_for(items)
// blocks of `threads`), or on a 2 x 32 grid (`strided`: several passes of the loop).
void launch(int64_t items, bool strided, const std::function<void()>& kernel) {
  if (strided)
    test::emulate_launch(2, 32, 0, kernel);
  else
    test::emulate_launch(static_cast<unsigned>(cuda::train::grid_for(items)), cuda::train::threads,
                         0, kernel);
}

// f(T{}, strided) for T = double, float, on train_ops.cu's grid and on the 2 x 32 one.
template <typename F>
void for_each_case(F f) {
  for (bool strided : {false, true}) {
    SCOPED_TRACE(strided ? "2 x 32 grid" : "train_ops.cu's grid");
    f(double{}, strided);
    f(float{}, strided);
  }
}

// ---------------------------------------------------------------- add_bias_inplace
template <typename T>
void check_add_bias(bool strided) {
  SCOPED_TRACE(dtype_name(dtype_of<T>()));
  const Tensor x0 = randn<T>(Shape{3, 5, 37}, 1),
               bias = randn<T>(Shape{37}, 2);  // 555 = 2 x 256 + 43
  Tensor want = x0.clone(), got = x0.clone();
  add_bias_inplace(want, bias);
  T* xp = got.data<T>();
  const T* bp = bias.data<T>();
  const int64_t n = got.numel(), c = bias.dim(0);
  launch(n, strided, [&] { cuda::train::add_bias_kernel<T>(xp, bp, c, n); });
  EXPECT_TRUE(same_bits(got, want)) << "add_bias_inplace";
}

TEST(CudaKernelEmulationTrainOps, AddBiasMatchesTheCpu) {
  for_each_case([](auto t, bool strided) { check_add_bias<decltype(t)>(strided); });
}

// ---------------------------------------------------------------- embeddings
// 110 rows over a vocabulary of 11: id 4 on every even row (55 rows: two chunks of the
// scatter, the second partial), the odd rows cycling over the other ids but 9 (unused:
// its dtable row must stay as it was).
std::vector<int32_t> embedding_ids() {
  std::vector<int32_t> ids;
  const int32_t others[] = {0, 10, 3, 7, 1, 2, 5, 6, 8};
  for (int r = 0; r < 110; ++r) ids.push_back(r % 2 == 0 ? 4 : others[(r / 2) % 9]);
  return ids;
}

template <typename T>
void check_embedding(bool strided) {
  SCOPED_TRACE(dtype_name(dtype_of<T>()));
  const std::vector<int32_t> ids = embedding_ids();
  const int64_t vocab = 11, c = 13, rows = static_cast<int64_t>(ids.size());
  const Tensor table = randn<T>(Shape{vocab, c}, 3);

  // Forward: the gather (train_ops.cu uploads ids; here the kernel reads them on the host).
  const Tensor want_y = embedding(table, ids);
  Tensor y = poisoned<T>(Shape{rows, c});
  const T* tp = table.data<T>();
  const int32_t* ip = ids.data();
  T* yp = y.data<T>();
  launch(y.numel(), strided, [&] { cuda::train::gather_kernel<T>(tp, ip, c, rows * c, yp); });
  EXPECT_TRUE(same_bits(y, want_y)) << "embedding";

  // Backward: the two passes over the plan train_ops.cu uploads, onto existing values.
  const Tensor dy = randn<T>(Shape{rows, c}, 4), base = randn<T>(Shape{vocab, c}, 5);
  Tensor want = base.clone(), got = base.clone();
  embedding_backward(ids, dy, want);
  const cuda::train::ScatterPlan plan = cuda::train::scatter_plan(ids, vocab);
  const int32_t* perm = plan.packed.data();
  const int32_t* chunk_begin = perm + plan.chunk_begin_at();
  const int32_t* gid = perm + plan.gid_at();
  const int32_t* group_chunk = perm + plan.group_chunk_at();
  Tensor partial = poisoned<T>(Shape{plan.chunks, c});
  const T* gp = dy.data<T>();
  T* pp = partial.data<T>();
  T* dp = got.data<T>();
  const int64_t chunks = plan.chunks, groups = plan.groups;
  launch(chunks * c, strided,
         [&] { cuda::train::scatter_chunks_kernel<T>(gp, perm, chunk_begin, chunks, c, pp); });
  launch(groups * c, strided,
         [&] { cuda::train::scatter_groups_kernel<T>(pp, gid, group_chunk, groups, c, dp); });
  EXPECT_LE(rel_error(got, want, "embedding_backward"), tolerance<T>()) << "embedding_backward";
  const std::vector<double> g = got.to_vector(), b = base.to_vector();
  for (int64_t j = 0; j < c; ++j)
    EXPECT_EQ(g[static_cast<std::size_t>(9 * c + j)], b[static_cast<std::size_t>(9 * c + j)])
        << "the unused id's row, column " << j;
}

TEST(CudaKernelEmulationTrainOps, EmbeddingGatherAndScatterMatchTheCpu) {
  for_each_case([](auto t, bool strided) { check_embedding<decltype(t)>(strided); });
}

TEST(CudaKernelEmulationTrainOps, ScatterPlanGroupsRowsByIdInChunks) {
  const std::vector<int32_t> ids = embedding_ids();
  const cuda::train::ScatterPlan p = cuda::train::scatter_plan(ids, 11);
  ASSERT_EQ(p.rows, 110);
  EXPECT_EQ(p.groups, 10) << "ten ids used";
  EXPECT_EQ(p.chunks, 11) << "id 4's 55 rows in two chunks, one for each other id";
  ASSERT_EQ(static_cast<int64_t>(p.packed.size()), p.rows + p.chunks + 1 + 2 * p.groups + 1);
  const int32_t* perm = p.packed.data();
  const int32_t* chunk_begin = perm + p.chunk_begin_at();
  const int32_t* gid = perm + p.gid_at();
  const int32_t* group_chunk = perm + p.group_chunk_at();
  std::vector<int> seen(ids.size(), 0);
  EXPECT_EQ(group_chunk[0], 0);
  EXPECT_EQ(group_chunk[p.groups], p.chunks);
  EXPECT_EQ(chunk_begin[p.chunks], p.rows);
  for (int64_t g = 0; g < p.groups; ++g) {
    if (g > 0) {
      EXPECT_LT(gid[g - 1], gid[g]) << "groups in increasing id";
    }
    for (int32_t k = group_chunk[g]; k < group_chunk[g + 1]; ++k) {
      EXPECT_LT(chunk_begin[k], chunk_begin[k + 1]) << "no empty chunk";
      EXPECT_LE(chunk_begin[k + 1] - chunk_begin[k], cuda::train::scatter_chunk);
      for (int32_t r = chunk_begin[k]; r < chunk_begin[k + 1]; ++r) {
        EXPECT_EQ(ids[static_cast<std::size_t>(perm[r])], gid[g]) << "row " << perm[r];
        if (r > chunk_begin[group_chunk[g]]) {
          EXPECT_LT(perm[r - 1], perm[r]) << "rows of an id in order";
        }
        ++seen[static_cast<std::size_t>(perm[r])];
      }
    }
  }
  EXPECT_EQ(seen, std::vector<int>(ids.size(), 1)) << "every row once";
}

// ---------------------------------------------------------------- positions
template <typename T>
void check_positions(bool strided) {
  SCOPED_TRACE(dtype_name(dtype_of<T>()));
  const int64_t b = 3, n = 7, c = 9, p = 10;  // P > N: rows N.. of dpos untouched
  const Tensor x0 = randn<T>(Shape{b, n, c}, 6), pos = randn<T>(Shape{p, c}, 7);
  Tensor want = x0.clone(), got = x0.clone();
  add_positions(want, pos);
  T* xp = got.data<T>();
  const T* pp = pos.data<T>();
  launch(got.numel(), strided,
         [&] { cuda::train::add_positions_kernel<T>(xp, pp, n * c, b * n * c); });
  EXPECT_TRUE(same_bits(got, want)) << "add_positions";

  const Tensor dy = randn<T>(Shape{b, n, c}, 8), base = randn<T>(Shape{p, c}, 9);
  Tensor want_d = base.clone(), got_d = base.clone();
  add_positions_backward(dy, want_d);
  const T* gp = dy.data<T>();
  T* dp = got_d.data<T>();
  launch(n * c, strided, [&] { cuda::train::add_positions_backward_kernel<T>(gp, b, n * c, dp); });
  EXPECT_TRUE(same_bits(got_d, want_d)) << "add_positions_backward (the CPU's order)";
}

TEST(CudaKernelEmulationTrainOps, PositionsMatchTheCpuBitForBit) {
  for_each_case([](auto t, bool strided) { check_positions<decltype(t)>(strided); });
}

// ---------------------------------------------------------------- CLS row
// prepend_row and its backward as train_ops.cu launches them (x: [B, N, C]).
template <typename T>
void check_prepend_shape(int64_t b, int64_t n, int64_t c, bool strided) {
  SCOPED_TRACE(::testing::Message()
               << dtype_name(dtype_of<T>()) << " B=" << b << " N=" << n << " C=" << c);
  const Tensor x = randn<T>(Shape{b, n, c}, 10), cls = randn<T>(Shape{c}, 11);
  const Tensor want = prepend_row(x, cls);
  Tensor y = poisoned<T>(Shape{b, n + 1, c});
  const T* xp = x.data<T>();
  const T* cp = cls.data<T>();
  T* yp = y.data<T>();
  const int64_t total = y.numel();
  launch(total, strided, [&] { cuda::train::prepend_kernel<T>(xp, cp, n, c, total, yp); });
  EXPECT_TRUE(same_bits(y, want)) << "prepend_row";

  const Tensor dy = randn<T>(Shape{b, n + 1, c}, 12);
  const PrependRowGrads cpu = prepend_row_backward(dy);
  Tensor dx = poisoned<T>(Shape{b, n, c}), dcls = poisoned<T>(Shape{c});
  const T* gp = dy.data<T>();
  T* dxp = dx.data<T>();
  T* dcp = dcls.data<T>();
  const int64_t dx_total = dx.numel();
  if (dx_total > 0)
    launch(dx_total, strided,
           [&] { cuda::train::prepend_backward_dx_kernel<T>(gp, n, c, dx_total, dxp); });
  if (c > 0)
    launch(c, strided, [&] { cuda::train::prepend_backward_cls_kernel<T>(gp, b, n, c, dcp); });
  EXPECT_TRUE(same_bits(dx, cpu.dx)) << "prepend_row_backward dx";
  EXPECT_TRUE(same_bits(dcls, cpu.dcls)) << "prepend_row_backward dcls (the CPU's order)";
}

template <typename T>
void check_prepend(bool strided) {
  check_prepend_shape<T>(3, 6, 11, strided);
  check_prepend_shape<T>(2, 0, 5, strided);  // no tokens: y is the CLS rows, dx is empty
}

TEST(CudaKernelEmulationTrainOps, PrependRowMatchesTheCpuBitForBit) {
  for_each_case([](auto t, bool strided) { check_prepend<decltype(t)>(strided); });
}

// ---------------------------------------------------------------- masked mean
// Batch 0 with its last third padded, batch 1 without any real token, batch 2 all tokens
// (test::tail_padded_mask), or no mask; the mask's dtype independent of x's.
template <typename T>
void check_masked_mean(bool strided) {
  const int64_t b = 3, n = 13, c = 37;  // N not a multiple of 8, C = 32 + 5 (a partial block)
  for (int mask_kind = 0; mask_kind < 3; ++mask_kind) {
    const Tensor mask =
        mask_kind == 0 ? Tensor()
                       : test::tail_padded_mask(b, n, mask_kind == 1 ? DType::f32 : DType::f64);
    SCOPED_TRACE(::testing::Message() << dtype_name(dtype_of<T>()) << " mask "
                                      << (mask_kind == 0 ? "none" : dtype_name(mask.dtype())));
    const void* mp = mask.defined() ? mask.raw_data() : nullptr;
    const bool mf32 = mask.defined() && mask.dtype() == DType::f32;

    // Forward: grid (mean_col_blocks(C), B) of (32, 8) blocks (not a grid-stride kernel:
    // once, with the 1-D kernels' first geometry).
    if (!strided) {
      const Tensor x = randn<T>(Shape{b, n, c}, 13);
      const Tensor want = masked_mean(x, mask);
      Tensor y = poisoned<T>(Shape{b, c});
      const T* xp = x.data<T>();
      T* yp = y.data<T>();
      test::emulate_launch({cuda::train::mean_col_blocks(c), static_cast<unsigned>(b), 1},
                           {cuda::train::mean_cols, cuda::train::mean_groups, 1}, 0,
                           [&] { cuda::train::masked_mean_kernel<T>(xp, mp, mf32, n, c, yp); });
      EXPECT_LE(rel_error(y, want, "masked_mean"), tolerance<T>()) << "masked_mean";
      const std::vector<double> yv = y.to_vector();
      if (mask.defined()) {
        for (int64_t j = 0; j < c; ++j)
          EXPECT_EQ(yv[static_cast<std::size_t>(c + j)], 0.0) << "no real token, column " << j;
      }
    }

    // Backward: list_real_positions' counts (real_positions_kernel, one block of
    // real_positions_threads per sequence; 32 threads on the strided pass), their inverses,
    // then dx.
    const Tensor dy = randn<T>(Shape{b, c}, 14);
    const Tensor want_dx = masked_mean_backward(dy, mask, Shape{b, n, c});
    std::vector<int> count(static_cast<std::size_t>(b), -1);
    std::vector<double> inv(static_cast<std::size_t>(b), std::nan(""));
    int* countp = count.data();
    double* invp = inv.data();
    if (strided)
      test::emulate_launch(static_cast<unsigned>(b), 32, 0,
                           [&] { cuda::real_positions_kernel<32>(mp, mf32, n, nullptr, countp); });
    else
      test::emulate_launch(static_cast<unsigned>(b), cuda::real_positions_threads, 0,
                           [&] { cuda::real_positions_kernel<>(mp, mf32, n, nullptr, countp); });
    launch(b, strided, [&] { cuda::train::inverse_counts_kernel<>(countp, b, invp); });
    Tensor dx = poisoned<T>(Shape{b, n, c});
    const T* gp = dy.data<T>();
    T* dxp = dx.data<T>();
    const int64_t total = dx.numel();
    launch(total, strided, [&] {
      cuda::train::masked_mean_backward_kernel<T>(gp, mp, mf32, invp, n, c, total, dxp);
    });
    EXPECT_LE(rel_error(dx, want_dx, "masked_mean_backward"), tolerance<T>())
        << "masked_mean_backward";
  }
}

TEST(CudaKernelEmulationTrainOps, MaskedMeanMatchesTheCpu) {
  for_each_case([](auto t, bool strided) { check_masked_mean<decltype(t)>(strided); });
}

// ---------------------------------------------------------------- pair features
template <typename T>
void check_pair_features(bool strided) {
  SCOPED_TRACE(dtype_name(dtype_of<T>()));
  const int64_t b = 5, c = 53;  // 265 elements: a partial second block
  const Tensor u = randn<T>(Shape{b, c}, 15), v = randn<T>(Shape{b, c}, 16);
  const Tensor want = pair_features(u, v);
  Tensor y = poisoned<T>(Shape{b, 4 * c});
  const T* up = u.data<T>();
  const T* vp = v.data<T>();
  T* yp = y.data<T>();
  launch(b * c, strided, [&] { cuda::train::pair_kernel<T>(up, vp, c, b * c, yp); });
  EXPECT_TRUE(same_bits(y, want)) << "pair_features";

  const Tensor dy = randn<T>(Shape{b, 4 * c}, 17);
  const PairFeatureGrads cpu = pair_features_backward(u, v, dy);
  Tensor du = poisoned<T>(Shape{b, c}), dv = poisoned<T>(Shape{b, c});
  const T* gp = dy.data<T>();
  T* dup = du.data<T>();
  T* dvp = dv.data<T>();
  launch(b * c, strided,
         [&] { cuda::train::pair_backward_kernel<T>(up, vp, gp, c, b * c, dup, dvp); });
  EXPECT_LE(rel_error(du, cpu.du, "du"), tolerance<T>()) << "du";
  EXPECT_LE(rel_error(dv, cpu.dv, "dv"), tolerance<T>()) << "dv";
}

TEST(CudaKernelEmulationTrainOps, PairFeaturesMatchTheCpu) {
  for_each_case([](auto t, bool strided) { check_pair_features<decltype(t)>(strided); });
}

// ---------------------------------------------------------------- dropout
// 1029 elements: 258 Philox blocks (two thread blocks on the GPU's grid), the last holding
// one element; a seed and a stream with high words.
template <typename T>
void check_dropout(bool strided) {
  const Shape shape{3, 343};
  const uint64_t seed = 0x1234567890abcdefull, stream = (uint64_t{3} << 40) | 5;
  for (double p : {0.1, 0.5}) {
    SCOPED_TRACE(::testing::Message() << dtype_name(dtype_of<T>()) << " p=" << p);
    const Tensor want = dropout_keep_mask(shape, p, seed, stream, dtype_of<T>());
    Tensor got = poisoned<T>(shape);
    T* mp = got.data<T>();
    const int64_t total = got.numel();
    const uint64_t threshold = cuda::train::dropout_threshold(p);
    const T keep = static_cast<T>(1.0 / (1.0 - p));
    launch((total + 3) / 4, strided,
           [&] { cuda::train::keep_mask_kernel<T>(mp, total, threshold, seed, stream, keep); });
    EXPECT_TRUE(same_bits(got, want)) << "dropout_keep_mask: the CPU's Philox draws";
    int64_t dropped = 0;
    for (double m : got.to_vector()) dropped += m == 0.0 ? 1 : 0;
    EXPECT_NEAR(static_cast<double>(dropped) / static_cast<double>(total), p, 0.06);
  }
}

TEST(CudaKernelEmulationTrainOps, DropoutKeepMaskMatchesTheCpuBitForBit) {
  for_each_case([](auto t, bool strided) { check_dropout<decltype(t)>(strided); });
}

// ---------------------------------------------------------------- fused block epilogues
// The four kernels against the CPU ops, as train_ops.cu launches them: the dropped elements
// exactly (the same Philox draws), the values to rounding (this file is compiled with the
// compiler's default contraction, where the device and the CPU kernel round the product
// before the add: the GPU parity tests check those bits).
template <typename T>
void check_bias_dropout_add(bool strided) {
  SCOPED_TRACE(dtype_name(dtype_of<T>()));
  const Shape shape{3, 5, 37};  // 555 elements: the last Philox block is partial
  const Tensor y = randn<T>(shape, 30), bias = randn<T>(Shape{37}, 31),
               residual = randn<T>(shape, 32);
  const DropoutDraw drop{0.3, 77, 1234};
  const uint64_t threshold = cuda::train::dropout_threshold(drop.p);
  const T keep = static_cast<T>(1.0 / (1.0 - drop.p));
  const int64_t total = y.numel(), c = 37;
  for (bool with_parts : {true, false}) {
    SCOPED_TRACE(with_parts ? "bias and residual" : "dropout alone");
    const Tensor b = with_parts ? bias : Tensor(), r = with_parts ? residual : Tensor();
    Tensor want = Tensor::empty(shape, dtype_of<T>());
    bias_dropout_add(y, b, drop, r, want);
    Tensor got = poisoned<T>(shape);
    const T* yp = y.data<T>();
    const T* bp = with_parts ? bias.data<T>() : nullptr;
    const T* rp = with_parts ? residual.data<T>() : nullptr;
    T* op = got.data<T>();
    launch((total + 3) / 4, strided, [&] {
      cuda::train::bias_dropout_add_kernel<T>(yp, bp, c, rp, total, true, threshold, drop.seed,
                                              drop.stream, keep, op);
    });
    EXPECT_LE(rel_error(got, want, "bias_dropout_add"), tolerance<T>());
    // Without a residual, a dropped element is exactly zero on both.
    if (!with_parts) {
      const std::vector<double> g = got.to_vector(), w = want.to_vector();
      int64_t zeros = 0;
      for (std::size_t i = 0; i < w.size(); ++i) {
        EXPECT_EQ(g[i] == 0.0, w[i] == 0.0) << "element " << i;
        zeros += w[i] == 0.0;
      }
      EXPECT_GT(zeros, 100);
    }
  }
  // p = 0 draws nothing: y + bias in place.
  Tensor want = y.clone();
  add_bias_inplace(want, bias);
  Tensor got = y.clone();
  T* gp = got.data<T>();
  const T* bp = bias.data<T>();
  launch((total + 3) / 4, strided, [&] {
    cuda::train::bias_dropout_add_kernel<T>(gp, bp, c, nullptr, total, false, 0, 0, 0, T(1), gp);
  });
  EXPECT_TRUE(same_bits(got, want)) << "p = 0, in place";
}

TEST(CudaKernelEmulationTrainOps, BiasDropoutAddMatchesTheCpu) {
  for_each_case([](auto t, bool strided) { check_bias_dropout_add<decltype(t)>(strided); });
}

template <typename T>
void check_bias_gelu(bool strided) {
  SCOPED_TRACE(dtype_name(dtype_of<T>()));
  const Shape shape{6, 4, 29};
  const Tensor h = randn<T>(shape, 33, 2.0), bias = randn<T>(Shape{29}, 34),
               dg = randn<T>(shape, 35);
  const int64_t n = h.numel(), c = 29;
  Tensor g = poisoned<T>(shape), dz = poisoned<T>(shape);
  const T* hp = h.data<T>();
  const T* bp = bias.data<T>();
  const T* dgp = dg.data<T>();
  T* gp = g.data<T>();
  T* dzp = dz.data<T>();
  launch(n, strided, [&] { cuda::train::bias_gelu_kernel<T>(hp, bp, c, n, gp); });
  launch(n, strided, [&] { cuda::train::bias_gelu_backward_kernel<T>(hp, bp, dgp, c, n, dzp); });
  EXPECT_LE(rel_error(g, bias_gelu(h, bias), "bias_gelu"), tolerance<T>());
  EXPECT_LE(rel_error(dz, bias_gelu_backward(h, bias, dg), "bias_gelu_backward"), tolerance<T>());
}

TEST(CudaKernelEmulationTrainOps, BiasGeluMatchesTheCpu) {
  for_each_case([](auto t, bool strided) { check_bias_gelu<decltype(t)>(strided); });
}

template <typename T>
void check_bias_heads_first(bool strided) {
  SCOPED_TRACE(dtype_name(dtype_of<T>()));
  const int64_t batch = 3, seq = 7, heads = 4, d = 5;
  const Tensor y = randn<T>(Shape{batch * seq, heads * d}, 36), bias = randn<T>(Shape{heads * d}, 37);
  const Tensor want = bias_heads_first(y, bias, batch, heads);
  Tensor got = poisoned<T>(want.shape());
  const T* yp = y.data<T>();
  const T* bp = bias.data<T>();
  T* op = got.data<T>();
  const int64_t n = got.numel();
  launch(n, strided,
         [&] { cuda::train::bias_heads_first_kernel<T>(yp, bp, heads, seq, d, n, op); });
  EXPECT_TRUE(same_bits(got, want));
}

TEST(CudaKernelEmulationTrainOps, BiasHeadsFirstMatchesTheCpuBitForBit) {
  for_each_case([](auto t, bool strided) { check_bias_heads_first<decltype(t)>(strided); });
}

// ---------------------------------------------------------------- cross-entropy
template <typename T>
void check_cross_entropy(bool strided) {
  SCOPED_TRACE(dtype_name(dtype_of<T>()));
  const int64_t b = 37, k = 5;
  Tensor logits = randn<T>(Shape{b, k}, 18, 2.0);
  std::vector<double> l = logits.to_vector();
  l[1 * k + 1] = l[1 * k + 3] = 9.0;  // row 1: a tie (the first arg-max counts)
  l[2 * k + 4] = 80.0;                // row 2: one dominant logit (the others' probs ~ 1e-35)
  logits = Tensor::from_values(Shape{b, k}, l, dtype_of<T>());
  std::vector<int32_t> labels;
  for (int64_t i = 0; i < b; ++i) labels.push_back(static_cast<int32_t>((i * 3 + i / 4) % k));
  labels[1] = 1;
  labels[2] = 4;
  const CrossEntropyResult cpu = cross_entropy(logits, labels);
  const CrossEntropyStats cpu_stats = cross_entropy_stats(logits, labels);
  ASSERT_GT(cpu.correct, 1);

  // Forward: the per-row kernel (labels uploaded by train_ops.cu; read on the host here),
  // then the host's row-order sum (cross_entropy) or the one-thread kernel (_stats).
  Tensor probs = poisoned<T>(Shape{b, k});
  std::vector<double> rows(static_cast<std::size_t>(2 * b), std::nan(""));
  const T* lp = logits.data<T>();
  const int32_t* labp = labels.data();
  T* pp = probs.data<T>();
  double* rp = rows.data();
  launch(b, strided, [&] { cuda::train::cross_entropy_kernel<T>(lp, labp, b, k, pp, rp); });
  EXPECT_LE(rel_error(probs, cpu.probs, "probs"), tolerance<T>()) << "probs";
  int64_t correct = -1;
  const double loss = cuda::train::mean_loss_of_rows(rows, b, correct);
  EXPECT_NEAR(loss, cpu.loss, 1e-12 * std::abs(cpu.loss)) << "loss (double on both)";
  EXPECT_EQ(correct, cpu.correct) << "hits";
  std::vector<double> stats(2, std::nan(""));
  double* sp = stats.data();
  test::emulate_launch(1, 1, 0, [&] { cuda::train::sum_stats_kernel<>(rp, b, sp); });
  const std::vector<double> want_stats = cpu_stats.stats.to_vector();
  EXPECT_NEAR(stats[0], want_stats[0], 1e-12 * std::abs(want_stats[0])) << "summed loss";
  EXPECT_EQ(stats[1], want_stats[1]) << "hits";

  // Backward: (probs - onehot) / B from the CPU's probs.
  const Tensor want_dx = cross_entropy_backward(cpu.probs, labels);
  Tensor dx = poisoned<T>(Shape{b, k});
  const T* cpp = cpu.probs.data<T>();
  T* dxp = dx.data<T>();
  const T inv = static_cast<T>(1.0 / static_cast<double>(b));  // as train_ops.cu
  launch(b * k, strided,
         [&] { cuda::train::cross_entropy_backward_kernel<T>(cpp, labp, k, b * k, inv, dxp); });
  EXPECT_LE(rel_error(dx, want_dx, "cross_entropy_backward"), tolerance<T>())
      << "cross_entropy_backward";
}

TEST(CudaKernelEmulationTrainOps, CrossEntropyMatchesTheCpu) {
  for_each_case([](auto t, bool strided) { check_cross_entropy<decltype(t)>(strided); });
}

TEST(CudaKernelEmulationTrainOps, CrossEntropyStatsOfAnEmptyBatchAreZero) {
  // train_ops.cu launches sum_stats_kernel even for B = 0 (no rows to read).
  std::vector<double> stats(2, std::nan(""));
  double* sp = stats.data();
  test::emulate_launch(1, 1, 0, [&] { cuda::train::sum_stats_kernel<>(nullptr, 0, sp); });
  EXPECT_EQ(stats, (std::vector<double>{0.0, 0.0}));
  EXPECT_EQ(cross_entropy_stats(Tensor::empty(Shape{0, 3}), {}).stats.to_vector(), stats);
}

}  // namespace
}  // namespace lra::core
