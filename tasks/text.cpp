// Text (IMDB reviews, byte level). Two on-disk formats:
//  - imdb: the aclImdb release, `<data_dir>/{train,test}/{pos,neg}/<id>_<rating>.txt`
//    (pos = 1, neg = 0; `unsup` is ignored); files are taken in (id, name) order, neg first.
//  - tsv: `<data_dir>/{train,test}.tsv` (and optionally `val.tsv`), one `label<TAB>text`
//    per line, label 0 or 1, an optional header line `label<TAB>text`.
// Tokens: byte + 1 (0 = padding), truncated to max_len (default 4000).
// Validation: `val: holdout` takes a seeded `val_fraction` (default 10%) of the training
// set out of it; `val: test` uses the test set (what LRA's code did); `val: file` reads
// val.tsv; `auto` (default) = file when val.tsv exists in tsv format, else holdout.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>

#include "core/error.h"
#include "core/parallel.h"
#include "tasks/cache.h"
#include "tasks/dataset.h"
#include "tasks/task_io.h"

namespace lra::tasks {

namespace {

constexpr int text_vocab = 257;

struct Source {
  std::string path;
  int32_t label;
};

bool is_dir(const std::string& p) {
  std::error_code ec;
  return std::filesystem::is_directory(p, ec);
}
bool is_file(const std::string& p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec);
}

// The review files of `<root>/<part>/{neg,pos}` in a fixed order.
std::vector<Source> imdb_files(const std::string& root, const std::string& part) {
  std::vector<Source> files;
  for (auto [sub, label] : {std::pair{"neg", 0}, std::pair{"pos", 1}}) {
    std::string dir = root + "/" + part + "/" + sub;
    LRA_CHECK(is_dir(dir), "{}: missing folder (expected the aclImdb layout {}/{{train,test}}/{{pos,neg}})",
              dir, root);
    std::vector<std::pair<int64_t, std::string>> names;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      std::string name = entry.path().filename().string();
      if (name.size() < 5 || name.substr(name.size() - 4) != ".txt") continue;
      int64_t id = -1;
      std::size_t us = name.find('_');
      if (us == std::string::npos || !parse_int64(name.substr(0, us), id)) id = -1;
      names.emplace_back(id, name);
    }
    LRA_CHECK(!ec, "{}: cannot list ({})", dir, ec.message());
    LRA_CHECK(!names.empty(), "{}: no .txt reviews", dir);
    std::sort(names.begin(), names.end());
    for (auto& [id, name] : names) files.push_back({dir + "/" + name, label});
  }
  return files;
}

std::vector<Example> load_imdb(const std::vector<Source>& files, int64_t max_len) {
  std::vector<Example> examples(files.size());
  const int64_t n = static_cast<int64_t>(files.size()), grain = 128;
  std::vector<std::string> errors(static_cast<std::size_t>((n + grain - 1) / grain));
  core::parallel_for(n, grain, [&](int64_t begin, int64_t end) {
    std::string& err = errors[static_cast<std::size_t>(begin / grain)];
    for (int64_t i = begin; i < end && err.empty(); ++i) {
      const auto& f = files[static_cast<std::size_t>(i)];
      try {
        std::string bytes = read_file(f.path);
        LRA_CHECK(!bytes.empty(), "{}: empty review", f.path);
        auto& e = examples[static_cast<std::size_t>(i)];
        e.tokens = byte_tokens(bytes, max_len);
        e.label = f.label;
      } catch (const Error& e) {
        err = e.what();
      }
    }
  });
  for (const auto& err : errors)
    if (!err.empty()) throw Error(err);
  return examples;
}

std::vector<Example> load_text_tsv(const std::string& path, int64_t max_len) {
  std::string text = read_file(path);
  LineReader reader(text);
  std::string_view line;
  std::vector<Example> examples;
  while (reader.next(line)) {
    if (line.empty()) continue;
    if (reader.line_number() == 1 && line == "label\ttext") continue;
    std::size_t tab = line.find('\t');
    LRA_CHECK(tab != std::string_view::npos, "{}:{}: expected 'label<TAB>text'", path, reader.line_number());
    int64_t label = -1;
    LRA_CHECK(parse_int64(line.substr(0, tab), label) && (label == 0 || label == 1),
              "{}:{}: label '{}' is not 0 or 1", path, reader.line_number(), std::string(line.substr(0, std::min<std::size_t>(tab, 20))));
    std::string_view body = line.substr(tab + 1);
    LRA_CHECK(!body.empty(), "{}:{}: empty text", path, reader.line_number());
    Example e;
    e.tokens = byte_tokens(body, max_len);
    e.label = static_cast<int32_t>(label);
    examples.push_back(std::move(e));
  }
  LRA_CHECK(!examples.empty(), "{}: no examples", path);
  return examples;
}

std::vector<Example> load_part(const std::string& dir, const std::string& format, const std::string& part,
                               int64_t max_len, const CacheOptions& cache) {
  if (format == "imdb") {
    auto files = imdb_files(dir, part);
    std::vector<std::string> paths;
    for (const auto& f : files) paths.push_back(f.path);
    return cached_load(cache, fmt::format("text_imdb_{}", part),
                       fmt::format("text imdb loader v1 part={} max_len={}", part, max_len), paths,
                       [&] { return load_imdb(files, max_len); })
        .examples;
  }
  std::string path = dir + "/" + part + ".tsv";
  return cached_load(cache, fmt::format("text_tsv_{}", part), fmt::format("text tsv loader v1 max_len={}", max_len),
                     {path}, [&] { return load_text_tsv(path, max_len); })
      .examples;
}

std::unique_ptr<Dataset> load(const YAML::Node& node, Split split, const std::string& context) {
  auto keys = common_task_keys();
  for (const char* k : {"format", "val", "val_fraction", "val_seed"}) keys.insert(k);
  TaskSection section(node, context, keys);
  std::string dir = section.require_string("data_dir");
  int64_t max_len = section.get_int("max_len", 4000, 1, 1 << 30);
  std::string format = section.get_choice("format", "auto", {"auto", "imdb", "tsv"});
  if (format == "auto") {
    if (is_dir(dir + "/train/pos")) format = "imdb";
    else if (is_file(dir + "/train.tsv")) format = "tsv";
    else fail("{}: {} holds neither the aclImdb layout (train/pos, ...) nor train.tsv", context, dir);
  }
  std::string val = section.get_choice("val", "auto", {"auto", "holdout", "test", "file"});
  if (val == "auto") val = (format == "tsv" && is_file(dir + "/val.tsv")) ? "file" : "holdout";
  LRA_CHECK(val != "file" || format == "tsv", "{}.val: 'file' needs format tsv (a val.tsv)", context);
  double fraction = section.get_double("val_fraction", 0.1, 0.0, 0.9);
  auto seed = static_cast<uint64_t>(section.get_int("val_seed", 0, 0, INT64_MAX));
  CacheOptions cache{section.get_bool("cache", true), dir, section.get_string("cache_dir", "")};

  std::vector<Example> examples;
  std::string where = fmt::format("{} ({} split)", dir, split_name(split));
  if (split == Split::test || (split == Split::val && val == "test")) {
    examples = load_part(dir, format, "test", max_len, cache);
  } else if (split == Split::val && val == "file") {
    examples = load_part(dir, format, "val", max_len, cache);
  } else if (split == Split::train && val != "holdout") {
    examples = load_part(dir, format, "train", max_len, cache);
  } else {
    // Seeded holdout: the first round(fraction * n) positions of a seeded permutation are
    // validation; both parts keep the file order.
    auto all = load_part(dir, format, "train", max_len, cache);
    auto n = static_cast<int64_t>(all.size());
    auto n_val = static_cast<int64_t>(std::llround(fraction * static_cast<double>(n)));
    std::vector<char> is_val(all.size(), 0);
    auto order = epoch_order(n, seed ^ 0x74657874ull, 0);
    for (int64_t i = 0; i < n_val; ++i) is_val[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])] = 1;
    bool want_val = split == Split::val;
    for (std::size_t i = 0; i < all.size(); ++i)
      if (static_cast<bool>(is_val[i]) == want_val) examples.push_back(std::move(all[i]));
    LRA_CHECK(!examples.empty(), "{}: the {} split is empty (val_fraction {})", where, split_name(split), fraction);
  }
  validate_examples(examples, 2, text_vocab, false, where);
  return std::make_unique<VectorDataset>("text", std::move(examples), 2, text_vocab, false);
}

}  // namespace

LRA_REGISTER_TASK(TaskInfo{"text", "Text: IMDB reviews, byte level, 2 classes (aclImdb or label<TAB>text TSV)", 2,
                           text_vocab, 4000, false, load});

}  // namespace lra::tasks
