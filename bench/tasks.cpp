// Task data throughput: generating the default ListOps split (96000/2000/2000) and
// loading its training split back, from the TSV and from the binary cache (records/s).
// Run: build/bench/lra_bench_tasks --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <string>

#include "tasks/dataset.h"
#include "tasks/listops.h"

namespace {

const std::string& listops_dir() {
  static const std::string dir = [] {
    std::string d = (std::filesystem::temp_directory_path() / "lra_bench_listops").string();
    std::filesystem::remove_all(d);
    lra::tasks::listops::generate_files(d, 0, {});
    return d;
  }();
  return dir;
}

void BM_ListopsGenerateDefault(benchmark::State& state) {
  std::string out = (std::filesystem::temp_directory_path() / "lra_bench_listops_gen").string();
  lra::tasks::listops::GeneratorConfig config;  // 96000 / 2000 / 2000
  int64_t records = config.train + config.val + config.test;
  for (auto _ : state) {
    auto stats = lra::tasks::listops::generate_files(out, 0, config);
    benchmark::DoNotOptimize(stats);
  }
  std::filesystem::remove_all(out);
  state.counters["records/s"] =
      benchmark::Counter(static_cast<double>(records * state.iterations()), benchmark::Counter::kIsRate);
}

void load_train(benchmark::State& state, bool cache) {
  const std::string& dir = listops_dir();
  YAML::Node node;
  node["name"] = "listops";
  node["data_dir"] = dir;
  node["cache"] = cache;
  if (cache) lra::tasks::load_dataset(node, lra::tasks::Split::train);  // build the cache once
  int64_t records = 0;
  for (auto _ : state) {
    auto data = lra::tasks::load_dataset(node, lra::tasks::Split::train);
    records += data->size();
    benchmark::DoNotOptimize(data->example(0).tokens.data());
  }
  state.counters["records/s"] = benchmark::Counter(static_cast<double>(records), benchmark::Counter::kIsRate);
}

void BM_ListopsLoadTsv(benchmark::State& state) { load_train(state, false); }
void BM_ListopsLoadCache(benchmark::State& state) { load_train(state, true); }

}  // namespace

BENCHMARK(BM_ListopsGenerateDefault)->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();
BENCHMARK(BM_ListopsLoadTsv)->Unit(benchmark::kSecond)->Iterations(2)->UseRealTime();
BENCHMARK(BM_ListopsLoadCache)->Unit(benchmark::kSecond)->Iterations(2)->UseRealTime();

BENCHMARK_MAIN();
