// Batched GEMM rate on the CPU: [P x M x K] * [P x K x N] in f32 (and f64), reported as
// GFLOP/s (2 M N K per batch entry; the "GFLOP" counter is a rate, printed as GFLOP=x/s).
#include <benchmark/benchmark.h>

#include "core/ops.h"
#include "core/rng.h"

namespace {

using namespace lra::core;

// Args: P, M, K, N and optionally trans_a, trans_b (a stored [K, M], b stored [N, K]).
void batched_gemm(benchmark::State& state, DType dtype) {
  int64_t p = state.range(0), m = state.range(1), k = state.range(2), n = state.range(3);
  bool ta = state.range(4) != 0, tb = state.range(5) != 0;
  Tensor a = Tensor::empty(ta ? Shape{p, k, m} : Shape{p, m, k}, dtype);
  Tensor b = Tensor::empty(tb ? Shape{p, n, k} : Shape{p, k, n}, dtype);
  Tensor c = Tensor::empty(Shape{p, m, n}, dtype);
  fill_normal(a, 1, 0);
  fill_normal(b, 2, 0);
  for (auto _ : state) {
    gemm(a, ta, b, tb, c);
    benchmark::DoNotOptimize(c.raw_data());
  }
  double flops = 2.0 * static_cast<double>(p * m * n * k);
  state.counters["GFLOP"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_gemm_f32(benchmark::State& s) { batched_gemm(s, DType::f32); }
void BM_gemm_f64(benchmark::State& s) { batched_gemm(s, DType::f64); }

// [32 x 1024 x 64 x 1024]: 32 batches of (1024 x 64) * (64 x 1024), the QKᵀ shape.
BENCHMARK(BM_gemm_f32)->Args({32, 1024, 64, 1024, 0, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_f32)->Args({32, 1024, 1024, 64, 0, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_f64)->Args({32, 1024, 64, 1024, 0, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
// The Nyström-64 products of the ListOps training step (B * H = 64, N = 2000, D = 32,
// m = 64): Q K̃ᵀ, Q̃ Kᵀ, B V, F X and the backward's Fᵀ dO, B̃ᵀ dBV-like transposed forms.
BENCHMARK(BM_gemm_f32)->Args({64, 2000, 32, 64, 0, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_f32)->Args({64, 64, 32, 2000, 0, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_f32)->Args({64, 64, 2000, 32, 0, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_f32)->Args({64, 2000, 64, 32, 0, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_f32)->Args({64, 64, 2000, 32, 1, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_f32)->Args({64, 2000, 64, 32, 1, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_f32)->Args({64, 64, 64, 64, 0, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
// Exact softmax at B * H = 16, N = 2000, D = 32: Q Kᵀ, P V, Pᵀ dO.
BENCHMARK(BM_gemm_f32)->Args({16, 2000, 32, 2000, 0, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_f32)->Args({16, 2000, 2000, 32, 0, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_f32)->Args({16, 2000, 2000, 32, 1, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
// The encoder's linear layers at the ListOps step (32 x 2000 tokens, dim 64, FFN 128):
// x Wᵀ forward and dy W backward.
BENCHMARK(BM_gemm_f32)->Args({1, 64000, 64, 128, 0, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_f32)->Args({1, 64000, 128, 64, 0, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_f32)->Args({1, 64000, 128, 64, 0, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
// Performer-256 at B * H = 2, N = 8192: φ(K)ᵀ V and φ(Q) (KᵀV).
BENCHMARK(BM_gemm_f32)->Args({2, 256, 8192, 32, 1, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_f32)->Args({2, 8192, 256, 32, 0, 0})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
