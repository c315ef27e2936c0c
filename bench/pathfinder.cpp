// Pathfinder data rates: generating images (in memory, and written as PNG + metadata in
// the official layout), and loading 10,000 PNGs through the task loader (decode from
// PNG, and from the binary cache). items_per_second is per second of wall time; the CPU
// column is the whole process (all threads): images / CPU-second is the per-core rate.
#include "tasks/pathfinder.h"

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "core/parallel.h"
#include "tasks/pathfinder_generator.h"

namespace {

namespace fs = std::filesystem;
using namespace lra::tasks;

std::string bench_dir(const std::string& name) {
  return (fs::temp_directory_path() / ("lra_bench_pf_" + name + "_" + std::to_string(::getpid())))
      .string();
}

// Images generated in memory (no PNG encoding), in parallel batches of 512.
void BM_pathfinder_generate(benchmark::State& state) {
  PathfinderParams params =
      pathfinder_params(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  const int64_t batch = 512;
  int64_t next = 0;
  for (auto _ : state) {
    lra::core::parallel_for(batch, 8, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        benchmark::DoNotOptimize(generate_pathfinder_image(params, 1, next + i).pixels.data());
    });
    next += batch;
  }
  state.SetItemsProcessed(state.iterations() * batch);
}

// The full generator path: images, PNG encoding, files and metadata.
void BM_pathfinder_write(benchmark::State& state) {
  PathfinderParams params = pathfinder_params(static_cast<int>(state.range(0)), 14);
  const int64_t count = state.range(1);
  std::string dir = bench_dir("write");
  uint64_t seed = 0;
  for (auto _ : state) {
    write_pathfinder_set(dir, seed++, params, count, 1000);
    state.PauseTiming();
    fs::remove_all(dir);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * count);
}

// Loading 10,000 generated 32x32 PNGs: decode (cache off) and from the cache.
const std::string& load_fixture() {
  static const std::string dir = [] {
    std::string d = bench_dir("load");
    fs::remove_all(d);
    write_pathfinder_set(d, 7, pathfinder_params(32, 14), 10000, 1000);
    return d;
  }();
  return dir;
}

void BM_pathfinder_load(benchmark::State& state) {
  PathfinderLoadOptions options;
  options.data_dir = load_fixture();
  options.cache = state.range(0) != 0;
  if (options.cache) read_pathfinder_set(options);  // build the cache once
  int64_t records = 0;
  for (auto _ : state) {
    PathfinderSet set = read_pathfinder_set(options);
    records += set.lines;
    benchmark::DoNotOptimize(set.pixels.data());
  }
  state.SetItemsProcessed(records);
  state.SetLabel(options.cache ? "from cache" : "decode PNGs");
}

BENCHMARK(BM_pathfinder_generate)
    ->Args({32, 14})
    ->Args({32, 6})
    ->Args({128, 14})
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()
    ->UseRealTime();
BENCHMARK(BM_pathfinder_write)
    ->Args({32, 5000})
    ->Args({128, 500})
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()
    ->UseRealTime()
    ->Iterations(2);
BENCHMARK(BM_pathfinder_load)
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()
    ->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (!fs::exists(bench_dir("load"))) return 0;
  fs::remove_all(bench_dir("load"));
  return 0;
}
