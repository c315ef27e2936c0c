// Every registered attention backend with its default settings (Nyström: 64 landmarks,
// conv 35; Linformer k 256; Performer 256 features; Skeinformer 256 samples), f32 CPU,
// B=1, H=2, D=32, N in {512, 2048, 4096, 8192}, forward and forward+backward (backward
// from a fixed random output gradient), plus forward+backward at the LRA training shape
// B=32, H=2, N=2000, D=32. The "GFLOP" counter is the analytic FLOPs of cost() per
// second (printed as GFLOP=x/s). On a shared machine run with OMP_WAIT_POLICY=passive:
// spinning OpenMP workers otherwise steal the cores the working threads need.
//   lra_bench_attention --benchmark_filter='nystrom|softmax'
#include <benchmark/benchmark.h>
#include <yaml-cpp/yaml.h>

#include <string>

#include "attention/attention.h"
#include "core/allocator.h"
#include "core/rng.h"

namespace {

using namespace lra;

void run(benchmark::State& state, const std::string& type, int64_t n, bool backward, int64_t batch = 1) {
  attention::AttnShape shape{batch, 2, n, 32};
  attention::AttentionOptions options;
  options.seed = 1;
  YAML::Node spec(YAML::NodeType::Map);
  spec["type"] = type;
  auto attn = attention::make_attention(spec, shape, options, "bench");
  core::Shape s{batch, 2, n, 32};
  core::Tensor q = core::Tensor::empty(s), k = core::Tensor::empty(s), v = core::Tensor::empty(s),
               g = core::Tensor::empty(s);
  core::fill_normal(q, 1, 0);
  core::fill_normal(k, 2, 0);
  core::fill_normal(v, 3, 0);
  core::fill_normal(g, 4, 0);
  for (auto _ : state) {
    attention::Context ctx;
    core::Tensor out, dq, dk, dv;
    attn->forward(q, k, v, core::Tensor(), out, ctx);
    if (backward) attn->backward(g, ctx, dq, dk, dv);
    benchmark::DoNotOptimize(out.raw_data());
  }
  attention::Cost c = attn->cost(shape);
  double flops = c.forward_flops + (backward ? c.backward_flops : 0.0);
  state.counters["GFLOP"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

int main(int argc, char** argv) {
  // Repeated calls reuse warm pages, as in training (page faults were most of the noise).
  core::keep_freed_host_memory();
  for (const auto& [name, info] : attention::backends())
    for (bool backward : {false, true})
      for (int64_t n : {512, 2048, 4096, 8192}) {
        std::string label = name + (backward ? "/fwd+bwd/" : "/fwd/") + std::to_string(n);
        benchmark::RegisterBenchmark(label.c_str(), [=](benchmark::State& st) { run(st, name, n, backward); })
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime()
            ->MinTime(1.0);
      }
  // The LRA training shape (B=32, H=2, N=2000, D=32), forward+backward.
  for (const auto& [name, info] : attention::backends()) {
    std::string label = name + "/fwd+bwd/B32/2000";
    benchmark::RegisterBenchmark(label.c_str(), [=](benchmark::State& st) { run(st, name, 2000, true, 32); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->MinTime(1.0);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
