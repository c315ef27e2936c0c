// Batched GEMM rate on the CPU: [P x M x K] * [P x K x N] in f32 (and f64), reported as
// GFLOP/s (2 M N K per batch entry; the "GFLOP" counter is a rate, printed as GFLOP=x/s).
#include <benchmark/benchmark.h>

#include "core/ops.h"
#include "core/rng.h"

namespace {

using namespace lra::core;

void batched_gemm(benchmark::State& state, DType dtype) {
  int64_t p = state.range(0), m = state.range(1), k = state.range(2), n = state.range(3);
  Tensor a = Tensor::empty(Shape{p, m, k}, dtype);
  Tensor b = Tensor::empty(Shape{p, k, n}, dtype);
  Tensor c = Tensor::empty(Shape{p, m, n}, dtype);
  fill_normal(a, 1, 0);
  fill_normal(b, 2, 0);
  for (auto _ : state) {
    gemm(a, false, b, false, c);
    benchmark::DoNotOptimize(c.raw_data());
  }
  double flops = 2.0 * static_cast<double>(p * m * n * k);
  state.counters["GFLOP"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_gemm_f32(benchmark::State& s) { batched_gemm(s, DType::f32); }
void BM_gemm_f64(benchmark::State& s) { batched_gemm(s, DType::f64); }

// [32 x 1024 x 64 x 1024]: 32 batches of (1024 x 64) * (64 x 1024), the QKᵀ shape.
BENCHMARK(BM_gemm_f32)->Args({32, 1024, 64, 1024})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_f32)->Args({32, 1024, 1024, 64})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_f64)->Args({32, 1024, 64, 1024})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
