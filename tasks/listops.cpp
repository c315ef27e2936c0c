#include "tasks/listops.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <unordered_map>

#include "core/error.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "tasks/cache.h"
#include "tasks/dataset.h"
#include "tasks/task_io.h"

namespace lra::tasks::listops {

namespace {
constexpr std::array<std::string_view, 16> words = {"<pad>", "0", "1", "2",    "3",    "4",    "5",   "6",
                                                    "7",     "8", "9", "[MIN", "[MAX", "[MED", "[SM", "]"};
bool is_op(int32_t id) { return id >= min_id && id <= sm_id; }
bool is_digit(int32_t id) { return id >= digit_id(0) && id <= digit_id(9); }

int apply(int32_t op, int* args, std::size_t n) {
  switch (op) {
    case min_id: return *std::min_element(args, args + n);
    case max_id: return *std::max_element(args, args + n);
    case sm_id: {
      int sum = 0;
      for (std::size_t i = 0; i < n; ++i) sum += args[i];
      return sum % 10;
    }
    default: {  // med: integer part of the median (values are >= 0, so floor)
      std::sort(args, args + n);
      if (n % 2 == 1) return args[n / 2];
      return (args[n / 2 - 1] + args[n / 2]) / 2;
    }
  }
}
}  // namespace

std::string_view token_word(int32_t id) {
  LRA_CHECK(id >= 0 && id < vocab_size, "listops: token id {} outside [0, {})", id, vocab_size);
  return words[static_cast<std::size_t>(id)];
}

bool tokenize(std::string_view source, std::vector<int32_t>& ids, std::string& error) {
  ids.clear();
  std::size_t pos = 0;
  while (pos < source.size()) {
    if (source[pos] == ' ') {
      ++pos;
      continue;
    }
    std::size_t end = source.find(' ', pos);
    if (end == std::string_view::npos) end = source.size();
    std::string_view w = source.substr(pos, end - pos);
    pos = end;
    if (w == "(" || w == ")") continue;
    if (w.size() == 1 && w[0] >= '0' && w[0] <= '9') {
      ids.push_back(digit_id(w[0] - '0'));
    } else if (w == "]") {
      ids.push_back(end_id);
    } else if (w == "[MIN") {
      ids.push_back(min_id);
    } else if (w == "[MAX") {
      ids.push_back(max_id);
    } else if (w == "[MED") {
      ids.push_back(med_id);
    } else if (w == "[SM") {
      ids.push_back(sm_id);
    } else {
      std::string shown(w.substr(0, 40));
      for (char& c : shown)
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
      error = fmt::format("unknown word '{}' (expected ( ) ] [MIN [MAX [MED [SM or a digit 0-9)", shown);
      return false;
    }
  }
  return true;
}

bool try_evaluate(const int32_t* ids, std::size_t n, int& value, std::string& error) {
  // Iterative: values of open operators' arguments on one stack, operator frames on another.
  std::vector<int> values;
  std::vector<std::pair<int32_t, std::size_t>> frames;  // (operator, first argument index)
  bool done = false;
  for (std::size_t i = 0; i < n; ++i) {
    int32_t id = ids[i];
    if (done) {
      error = fmt::format("token {} ('{}') after the end of the expression", i,
                          id >= 0 && id < vocab_size ? words[static_cast<std::size_t>(id)] : "?");
      return false;
    }
    if (is_digit(id)) {
      values.push_back(id - 1);
      if (frames.empty()) done = true;
    } else if (is_op(id)) {
      frames.emplace_back(id, values.size());
    } else if (id == end_id) {
      if (frames.empty()) {
        error = fmt::format("token {}: ']' without an open operator", i);
        return false;
      }
      auto [op, first] = frames.back();
      frames.pop_back();
      std::size_t count = values.size() - first;
      if (count == 0) {
        error = fmt::format("token {}: operator {} has no arguments", i, words[static_cast<std::size_t>(op)]);
        return false;
      }
      int v = apply(op, values.data() + first, count);
      values.resize(first);
      values.push_back(v);
      if (frames.empty()) done = true;
    } else {
      error = fmt::format("token {}: id {} is not a ListOps token", i, id);
      return false;
    }
  }
  if (!done) {
    error = n == 0 ? std::string("empty expression")
                   : fmt::format("expression ends with {} unclosed operator(s)", frames.size());
    return false;
  }
  value = values.back();
  return true;
}

int evaluate(const std::vector<int32_t>& ids) {
  int value = 0;
  std::string error;
  LRA_CHECK(try_evaluate(ids.data(), ids.size(), value, error), "listops: {}", error);
  return value;
}

std::string to_source(const int32_t* ids, std::size_t n) {
  std::vector<int> children(n, 0);
  std::vector<std::size_t> open;
  for (std::size_t i = 0; i < n; ++i) {
    if (is_op(ids[i]) || is_digit(ids[i])) {
      if (!open.empty()) ++children[open.back()];
      if (is_op(ids[i])) open.push_back(i);
    } else if (ids[i] == end_id) {
      LRA_CHECK(!open.empty(), "listops: to_source: unbalanced ']' at token {}", i);
      open.pop_back();
    }
  }
  std::string out;
  out.reserve(n * 6);
  auto word = [&](std::string_view w) {
    if (!out.empty()) out += ' ';
    out += w;
  };
  std::size_t depth = 0;  // open operators
  for (std::size_t i = 0; i < n; ++i) {
    int32_t id = ids[i];
    if (is_op(id)) {
      for (int k = 0; k <= children[i]; ++k) word("(");
      word(words[static_cast<std::size_t>(id)]);
      ++depth;
    } else if (is_digit(id)) {
      word(words[static_cast<std::size_t>(id)]);
      if (depth > 0) word(")");
    } else {
      word("]");
      word(")");
      --depth;
      if (depth > 0) word(")");
    }
  }
  return out;
}

namespace {

// Counter-based stream: candidate `index` owns counters (block, index); all four words
// of each Philox block are used.
class Stream {
 public:
  Stream(uint64_t seed, uint64_t index) : seed_(seed), index_(index) {}
  uint32_t next() {
    if (used_ == 4) {
      buf_ = core::philox4x32_10({block_++, static_cast<uint32_t>(index_), static_cast<uint32_t>(index_ >> 32),
                                  0x4c4f5053u /* "LOPS" */},
                                 {static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32)});
      used_ = 0;
    }
    return buf_[used_++];
  }
  double uniform() { return static_cast<double>(next()) * 0x1p-32; }
  int below(int n) { return static_cast<int>((static_cast<uint64_t>(next()) * static_cast<uint64_t>(n)) >> 32); }

 private:
  uint64_t seed_, index_;
  uint32_t block_ = 0;
  std::array<uint32_t, 4> buf_{};
  int used_ = 4;
};

// LRA's generate_tree: returns false as soon as the tree reaches max_length tokens
// (it would be rejected anyway; candidates are independent streams, so stopping early
// changes nothing else).
bool grow(Stream& rng, int depth, const GeneratorConfig& c, std::vector<int32_t>& ids) {
  if (static_cast<int64_t>(ids.size()) >= c.max_length) return false;
  double r = depth < c.max_depth ? rng.uniform() : 1.0;
  if (r > c.value_p) {
    ids.push_back(digit_id(rng.below(10)));
    return true;
  }
  int args = 2 + rng.below(c.max_args - 1);  // randint(2, max_args)
  std::size_t op_at = ids.size();
  ids.push_back(0);
  for (int a = 0; a < args; ++a)
    if (!grow(rng, depth + 1, c, ids)) return false;
  ids[op_at] = min_id + rng.below(4);  // LRA draws the operator after the arguments
  ids.push_back(end_id);
  return true;
}

uint64_t hash_ids(const std::vector<int32_t>& ids) { return checksum64(ids.data(), ids.size() * sizeof(int32_t)); }

}  // namespace

bool generate_candidate(uint64_t seed, uint64_t index, const GeneratorConfig& config, std::vector<int32_t>& ids) {
  ids.clear();
  Stream rng(seed, index);
  if (!grow(rng, 1, config, ids)) return false;
  auto length = static_cast<int64_t>(ids.size());
  return length > config.min_length && length < config.max_length;
}

std::vector<std::vector<int32_t>> generate(uint64_t seed, int64_t count, const GeneratorConfig& config,
                                           GeneratorStats* stats) {
  LRA_CHECK(count >= 0, "listops generate: negative count {}", count);
  LRA_CHECK(config.max_args >= 2 && config.max_depth >= 1 && config.min_length < config.max_length - 1,
            "listops generate: invalid configuration");
  std::vector<std::vector<int32_t>> kept;
  kept.reserve(static_cast<std::size_t>(count));
  std::unordered_multimap<uint64_t, std::size_t> seen;
  GeneratorStats s;
  // The chunk size only sets the parallel work size: candidates are taken in index
  // order, so the result does not depend on it.
  const int64_t chunk = std::clamp<int64_t>(count * 16, 1024, 1 << 15);
  std::vector<std::vector<int32_t>> batch(chunk);
  std::vector<char> ok(chunk);
  uint64_t next_index = 0;
  while (static_cast<int64_t>(kept.size()) < count) {
    core::parallel_for(chunk, 512, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        auto& ids = batch[static_cast<std::size_t>(i)];
        ok[static_cast<std::size_t>(i)] = generate_candidate(seed, next_index + static_cast<uint64_t>(i), config, ids);
        if (!ok[static_cast<std::size_t>(i)]) std::vector<int32_t>().swap(ids);
      }
    });
    for (int64_t i = 0; i < chunk && static_cast<int64_t>(kept.size()) < count; ++i) {
      ++s.candidates;
      auto& ids = batch[static_cast<std::size_t>(i)];
      if (!ok[static_cast<std::size_t>(i)]) {
        ++s.rejected_length;
        continue;
      }
      uint64_t h = hash_ids(ids);
      bool duplicate = false;
      for (auto [it, last] = seen.equal_range(h); it != last; ++it)
        if (kept[it->second] == ids) duplicate = true;
      if (duplicate) {
        ++s.duplicates;
        continue;
      }
      seen.emplace(h, kept.size());
      kept.push_back(std::move(ids));
    }
    next_index += chunk;
  }
  if (stats) *stats = s;
  return kept;
}

void write_tsv(const std::string& path, const std::vector<std::vector<int32_t>>& trees, std::size_t begin,
               std::size_t end) {
  std::FILE* f = std::fopen((path + ".tmp").c_str(), "wb");
  LRA_CHECK(f != nullptr, "{}: cannot open for writing", path);
  bool ok = std::fputs("Source\tTarget\r\n", f) >= 0;
  constexpr std::size_t block = 2048;
  std::vector<std::string> lines(block);
  for (std::size_t b = begin; b < end && ok; b += block) {
    std::size_t e = std::min(end, b + block);
    core::parallel_for(static_cast<int64_t>(e - b), 64, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const auto& ids = trees[b + static_cast<std::size_t>(i)];
        lines[static_cast<std::size_t>(i)] = to_source(ids.data(), ids.size()) + '\t' +
                                             std::to_string(evaluate(ids)) + "\r\n";
      }
    });
    for (std::size_t i = 0; i < e - b && ok; ++i)
      ok = std::fwrite(lines[i].data(), 1, lines[i].size(), f) == lines[i].size();
  }
  ok = (std::fclose(f) == 0) && ok;
  LRA_CHECK(ok, "{}: write failed", path);
  std::error_code ec;
  std::filesystem::rename(path + ".tmp", path, ec);
  LRA_CHECK(!ec, "{}: cannot rename into place ({})", path, ec.message());
}

GeneratorStats generate_files(const std::string& out_dir, uint64_t seed, const GeneratorConfig& config) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  LRA_CHECK(!ec, "{}: cannot create folder ({})", out_dir, ec.message());
  GeneratorStats stats;
  auto trees = generate(seed, config.train + config.val + config.test, config, &stats);
  auto n_train = static_cast<std::size_t>(config.train), n_val = static_cast<std::size_t>(config.val);
  write_tsv(out_dir + "/basic_train.tsv", trees, 0, n_train);
  write_tsv(out_dir + "/basic_val.tsv", trees, n_train, n_train + n_val);
  write_tsv(out_dir + "/basic_test.tsv", trees, n_train + n_val, trees.size());
  return stats;
}

// ---- loader

namespace {

std::vector<Example> load_file(const std::string& path, int64_t max_len, bool verify_targets) {
  std::string text = read_file(path);
  LineReader reader(text);
  std::string_view line;
  LRA_CHECK(reader.next(line), "{}: empty file (expected the header 'Source<TAB>Target')", path);
  if (line.size() >= 3 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);  // UTF-8 BOM
  LRA_CHECK(line == "Source\tTarget", "{}:1: expected the header 'Source<TAB>Target'", path);
  std::vector<std::pair<int64_t, std::string_view>> lines;
  while (reader.next(line))
    if (!line.empty()) lines.emplace_back(reader.line_number(), line);

  std::vector<Example> examples(lines.size());
  constexpr int64_t grain = 256;
  const int64_t n = static_cast<int64_t>(lines.size());
  std::vector<std::string> chunk_error(static_cast<std::size_t>((n + grain - 1) / grain));
  core::parallel_for(n, grain, [&](int64_t begin, int64_t end) {
    std::string& err = chunk_error[static_cast<std::size_t>(begin / grain)];
    std::vector<int32_t> ids;
    for (int64_t i = begin; i < end && err.empty(); ++i) {
      auto [number, text_line] = lines[static_cast<std::size_t>(i)];
      auto where = [&, number = number] { return fmt::format("{}:{}", path, number); };
      std::size_t tab = text_line.find('\t');
      if (tab == std::string_view::npos || text_line.find('\t', tab + 1) != std::string_view::npos) {
        err = fmt::format("{}: expected 2 tab-separated fields (Source, Target)", where());
        break;
      }
      int64_t label = -1;
      std::string_view target = text_line.substr(tab + 1);
      if (!parse_int64(target, label) || label < 0 || label >= num_classes) {
        err = fmt::format("{}: Target '{}' is not an integer label in [0, 9]",
                          where(), std::string(target.substr(0, 20)));
        break;
      }
      std::string error;
      if (!tokenize(text_line.substr(0, tab), ids, error)) {
        err = fmt::format("{}: {}", where(), error);
        break;
      }
      int value = 0;
      if (!try_evaluate(ids.data(), ids.size(), value, error)) {
        err = fmt::format("{}: malformed expression: {}", where(), error);
        break;
      }
      if (verify_targets && value != label) {
        err = fmt::format("{}: Target {} but the expression evaluates to {} (set task.verify_targets: "
                          "false to load anyway)", where(), label, value);
        break;
      }
      auto& e = examples[static_cast<std::size_t>(i)];
      if (static_cast<int64_t>(ids.size()) > max_len) ids.resize(static_cast<std::size_t>(max_len));
      e.tokens = ids;
      e.label = static_cast<int32_t>(label);
    }
  });
  for (const auto& err : chunk_error)
    if (!err.empty()) throw Error(err);
  LRA_CHECK(!examples.empty(), "{}: no examples", path);
  return examples;
}

std::unique_ptr<Dataset> load(const YAML::Node& node, Split split, const std::string& context) {
  auto keys = common_task_keys();
  keys.insert("verify_targets");
  TaskSection section(node, context, keys);
  std::string dir = section.require_string("data_dir");
  int64_t max_len = section.get_int("max_len", 2000, 1, 1 << 30);
  bool verify = section.get_bool("verify_targets", true);
  std::string path = fmt::format("{}/basic_{}.tsv", dir, split_name(split));
  CacheOptions cache{section.get_bool("cache", true), dir, section.get_string("cache_dir", "")};
  auto result = cached_load(cache, fmt::format("listops_{}", split_name(split)),
                            fmt::format("listops loader v1 max_len={} verify={}", max_len, verify), {path},
                            [&] { return load_file(path, max_len, verify); });
  validate_examples(result.examples, num_classes, vocab_size, false, path);
  return std::make_unique<VectorDataset>("listops", std::move(result.examples), num_classes, vocab_size, false);
}

int64_t option_count(const std::map<std::string, std::string>& options, const std::string& key, int64_t fallback) {
  auto it = options.find(key);
  if (it == options.end()) return fallback;
  int64_t v = 0;
  LRA_CHECK(parse_int64(it->second, v) && v >= 0 && v <= 100'000'000,
            "lra data generate listops: --{} expects a count >= 0, got '{}'", key, it->second);
  return v;
}

void run_generator(const std::string& out_dir, uint64_t seed, const std::map<std::string, std::string>& options) {
  GeneratorConfig config;
  config.train = option_count(options, "train", config.train);
  config.val = option_count(options, "val", config.val);
  config.test = option_count(options, "test", config.test);
  GeneratorStats s = generate_files(out_dir, seed, config);
  std::printf("listops: wrote %lld train, %lld val, %lld test examples to %s (seed %llu)\n",
              static_cast<long long>(config.train), static_cast<long long>(config.val),
              static_cast<long long>(config.test), out_dir.c_str(), static_cast<unsigned long long>(seed));
  std::printf("listops: %lld candidate trees, %lld outside %lld < length < %lld, %lld duplicates\n",
              static_cast<long long>(s.candidates), static_cast<long long>(s.rejected_length),
              static_cast<long long>(config.min_length), static_cast<long long>(config.max_length),
              static_cast<long long>(s.duplicates));
}

}  // namespace

LRA_REGISTER_TASK(TaskInfo{"listops", "ListOps: nested MIN/MAX/MED/SM expressions, 10 classes (basic_*.tsv)",
                           num_classes, vocab_size, 2000, false, load});

LRA_REGISTER_GENERATOR(GeneratorInfo{
    "listops",
    "  --train N   training examples (default 96000)\n"
    "  --val N     validation examples (default 2000)\n"
    "  --test N    test examples (default 2000)\n",
    {"train", "val", "test"},
    run_generator});

}  // namespace lra::tasks::listops
