// `lra data generate TASK ...` and `lra data check TASK DIR`: build a synthetic task's
// files with its registered generator, or load every split of a task's data through the
// task registry, validate each record, and summarise counts, labels and lengths.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "core/error.h"
#include "harness/commands.h"
#include "tasks/dataset.h"

namespace lra::harness {
namespace {

const char* usage_text =
    "usage: lra data generate TASK --out DIR --seed S [generator options]\n"
    "       lra data check TASK DIR [--difficulty D] [--max-len N]\n\n"
    "generate: writes the task's files in the official layout into DIR, reproducibly\n"
    "          from the seed (same seed, same files, for any thread count).\n"
    "          listops     [--train N] [--val N] [--test N]   (default 96000/2000/2000)\n"
    "          pathfinder  see the README (--count, --resolution, --contour-length)\n"
    "          Options a generator does not know are errors.\n\n"
    "check:    loads the train, val and test splits of TASK from DIR (the folder as the\n"
    "          release unpacks it) exactly as training does, validates every record,\n"
    "          and prints per split the example count, label balance and a histogram of\n"
    "          sequence lengths (after truncation to the task's max_len).\n"
    "          --difficulty D  Pathfinder difficulty folder (default curv_contour_length_14)\n"
    "          --max-len N     truncation length (default: the task's)\n";

uint64_t parse_seed(const std::string& text) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  LRA_CHECK(!text.empty() && ec == std::errc() && ptr == text.data() + text.size(),
            "lra data generate: --seed expects a non-negative integer, got '{}'", text);
  return v;
}

int run_generate(const std::vector<std::string>& args) {
  LRA_CHECK(!args.empty() && args[0].rfind("-", 0) != 0, "usage: lra data generate TASK --out DIR --seed S ...");
  const std::string& task = args[0];
  const auto& gens = tasks::generators();
  auto it = gens.find(task);
  if (it == gens.end()) {
    std::string known;
    for (const auto& [n, g] : gens) known += (known.empty() ? "" : ", ") + n;
    fail("lra data generate: no generator for task '{}' (generators: {})", task, known.empty() ? "none" : known);
  }
  std::set<std::string> value_options{"--out", "--seed"};
  for (const auto& o : it->second.option_names) value_options.insert("--" + o);
  std::vector<std::string> rest(args.begin() + 1, args.end());
  ParsedArgs parsed = parse_args("data generate " + task, rest, value_options, {}, 0);
  std::string out = parsed.require("--out");
  uint64_t seed = parse_seed(parsed.require("--seed"));
  std::map<std::string, std::string> options;
  for (const auto& o : it->second.option_names)
    if (parsed.has("--" + o)) options[o] = parsed.get("--" + o);
  auto start = std::chrono::steady_clock::now();
  it->second.run(out, seed, options);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("generated %s data in %s in %.1f s\n", task.c_str(), out.c_str(), seconds);
  return 0;
}

void print_split(const tasks::Dataset& data, tasks::Split split, double seconds) {
  const int64_t n = data.size();
  std::vector<int64_t> labels(static_cast<std::size_t>(data.num_classes()), 0);
  std::vector<int64_t> lengths;
  lengths.reserve(static_cast<std::size_t>(n) * (data.pairs() ? 2 : 1));
  for (int64_t i = 0; i < n; ++i) {
    const auto& e = data.example(i);
    LRA_CHECK(e.label >= 0 && e.label < data.num_classes(), "{} example {}: label {} outside [0, {})",
              tasks::split_name(split), i, e.label, data.num_classes());
    for (const auto* seq : {&e.tokens, &e.tokens2}) {
      if (seq == &e.tokens2 && !data.pairs()) continue;
      LRA_CHECK(!seq->empty(), "{} example {}: empty sequence", tasks::split_name(split), i);
      for (int32_t id : *seq)
        LRA_CHECK(id >= 1 && id < data.vocab_size(), "{} example {}: token id {} outside [1, {})",
                  tasks::split_name(split), i, id, data.vocab_size());
      lengths.push_back(static_cast<int64_t>(seq->size()));
    }
    ++labels[static_cast<std::size_t>(e.label)];
  }
  std::printf("%s: %lld examples (loaded in %.2f s)\n", std::string(tasks::split_name(split)).c_str(),
              static_cast<long long>(n), seconds);
  std::printf("  labels:");
  for (std::size_t c = 0; c < labels.size(); ++c)
    std::printf(" %zu: %lld (%.1f%%)", c, static_cast<long long>(labels[c]),
                n ? 100.0 * static_cast<double>(labels[c]) / static_cast<double>(n) : 0.0);
  std::printf("\n");
  if (lengths.empty()) return;
  auto [lo_it, hi_it] = std::minmax_element(lengths.begin(), lengths.end());
  int64_t lo = *lo_it, hi = *hi_it;
  double mean = 0;
  for (int64_t l : lengths) mean += static_cast<double>(l);
  mean /= static_cast<double>(lengths.size());
  std::printf("  length%s: min %lld, mean %.1f, max %lld\n", data.pairs() ? " (each document)" : "",
              static_cast<long long>(lo), mean, static_cast<long long>(hi));
  const int bins = lo == hi ? 1 : 10;
  const int64_t width = std::max<int64_t>(1, (hi - lo + bins) / bins);
  std::vector<int64_t> counts(static_cast<std::size_t>(bins), 0);
  for (int64_t l : lengths) ++counts[static_cast<std::size_t>(std::min<int64_t>(bins - 1, (l - lo) / width))];
  int64_t peak = *std::max_element(counts.begin(), counts.end());
  for (int b = 0; b < bins; ++b) {
    int64_t from = lo + b * width, to = b == bins - 1 ? hi : from + width - 1;
    int bar = static_cast<int>(40 * counts[static_cast<std::size_t>(b)] / std::max<int64_t>(1, peak));
    std::printf("  [%6lld, %6lld] %8lld %s\n", static_cast<long long>(from), static_cast<long long>(to),
                static_cast<long long>(counts[static_cast<std::size_t>(b)]), std::string(static_cast<std::size_t>(bar), '#').c_str());
  }
}

int run_check(const std::vector<std::string>& args) {
  ParsedArgs parsed = parse_args("data check", args, {"--difficulty", "--max-len"}, {}, 2);
  LRA_CHECK(parsed.positionals.size() == 2, "usage: lra data check TASK DIR [--difficulty D] [--max-len N]");
  const std::string& task = parsed.positionals[0];
  const std::string& dir = parsed.positionals[1];
  const auto& info = tasks::task_info(task);
  YAML::Node node;
  node["name"] = task;
  node["data_dir"] = dir;
  if (parsed.has("--max-len")) {
    int64_t v = 0;
    const std::string s = parsed.get("--max-len");
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    LRA_CHECK(!s.empty() && ec == std::errc() && ptr == s.data() + s.size() && v >= 1,
              "lra data check: --max-len expects a positive integer, got '{}'", s);
    node["max_len"] = v;
  }
  if (parsed.has("--difficulty")) node["difficulty"] = parsed.get("--difficulty");
  std::printf("%s data in %s (%d classes, vocabulary %d%s)\n", task.c_str(), dir.c_str(), info.num_classes,
              info.vocab_size, info.pairs ? ", document pairs" : "");
  for (auto split : {tasks::Split::train, tasks::Split::val, tasks::Split::test}) {
    auto start = std::chrono::steady_clock::now();
    auto data = tasks::load_dataset(node, split, "lra data check");
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    print_split(*data, split, seconds);
  }
  std::printf("ok: every record of %s is valid\n", task.c_str());
  return 0;
}

int run_data(const std::vector<std::string>& args) {
  LRA_CHECK(!args.empty(), "usage: lra data generate|check ... (see `lra data --help`)");
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "generate") return run_generate(rest);
  if (args[0] == "check") return run_check(rest);
  fail("lra data: unknown action '{}' (expected generate or check)", args[0]);
}

}  // namespace

LRA_REGISTER_COMMAND(Command{"data", "generate synthetic task data or validate a task's data folder", usage_text,
                             run_data});

}  // namespace lra::harness
