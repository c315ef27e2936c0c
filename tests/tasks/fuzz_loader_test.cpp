// Fuzz: fixture files in each official format are mutated (deterministic seeds, a few
// thousand mutations in all); every load must end in an lra::Error or a fully valid
// split, never a crash. CI runs this binary under AddressSanitizer + UBSan.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "task_fixtures.h"
#include "tasks/image.h"
#include "tasks/task_io.h"

namespace lra::tasks {
namespace {

using testing::TempDir;

std::string mutate(const std::string& input, std::mt19937_64& g) {
  static const char interesting[] = {'\t', '\n', '\r', '\\', '\'', '"', 'b', 'x', '(', ')', ']', '[', ' ', '0',
                                     '9', '\0', '\xff', '\xe9', '-', '.'};
  std::string s = input;
  int steps = 1 + static_cast<int>(g() % 3);
  for (int k = 0; k < steps; ++k) {
    std::size_t n = s.size();
    std::size_t at = n ? g() % n : 0;
    switch (g() % 7) {
      case 0:
        if (n) s[at] = static_cast<char>(s[at] ^ (1 << (g() % 8)));
        break;
      case 1:
        if (n) s[at] = interesting[g() % sizeof interesting];
        break;
      case 2: s.insert(at, 1, interesting[g() % sizeof interesting]); break;
      case 3:
        if (n) s.erase(at, 1 + g() % std::min<std::size_t>(n - at, 16));
        break;
      case 4:
        if (n) s.insert(at, s.substr(g() % n, 1 + g() % 32));
        break;
      case 5: s.resize(n ? g() % n : 0); break;
      default:
        if (n) s[at] = static_cast<char>(g() % 256);
    }
  }
  return s;
}

struct Outcome {
  int loaded = 0, rejected = 0;
};

// Loads every split of `node`; errors must be lra::Error, loads must validate.
void load_all(const YAML::Node& node, Outcome& outcome, const std::vector<Split>& splits) {
  for (Split split : splits) {
    try {
      auto data = testing::load(node, split);
      const auto& info = task_info(node["name"].as<std::string>());
      std::vector<Example> copy;
      for (int64_t i = 0; i < data->size(); ++i) copy.push_back(data->example(i));
      validate_examples(copy, info.num_classes, info.vocab_size, info.pairs, "fuzz");
      ASSERT_GT(data->size(), 0);
      if (data->size() > 0) make_batch(*data, {0, data->size() - 1}, 64, true);
      ++outcome.loaded;
    } catch (const Error&) {
      ++outcome.rejected;
    }
  }
}

void fuzz_file(const std::string& task, const std::string& dir, const std::string& file, const std::string& fixture,
               int mutations, uint64_t seed, bool cache, const std::vector<Split>& splits) {
  std::mt19937_64 g(seed);
  Outcome outcome;
  auto node = testing::section(task, dir, cache);
  for (int m = 0; m < mutations; ++m) {
    testing::write_bytes(file, mutate(fixture, g));
    load_all(node, outcome, splits);
    if (::testing::Test::HasFatalFailure()) return;
  }
  EXPECT_GT(outcome.rejected, 0) << task;
  EXPECT_GT(outcome.loaded, 0) << task;
}

TEST(FuzzLoader, ListopsTsv) {
  TempDir dir;
  const std::string fixture =
      "Source\tTarget\r\n( ( ( [MAX 2 ) 9 ) ] )\t9\r\n( ( ( ( ( [MED 3 ) 1 ) 4 ) 2 ) ] )\t2\r\n"
      "( ( ( [SM ( ( ( [MIN 1 ) 2 ) ] ) ) 3 ) ] )\t4\n7\t7";
  fuzz_file("listops", dir.path(), dir / "basic_test.tsv", fixture, 900, 1, false, {Split::test});
}

TEST(FuzzLoader, RetrievalTsv) {
  TempDir dir;
  const std::string fixture =
      "1\tP00-1001\tP01-2002\tb'first\\ndoc \\xe9\\\\'\tb\"it's\"\r\n0.0\tA\tB\tplain one\tb'\\t\\x41\\101'";
  fuzz_file("retrieval", dir.path(), dir / "new_aan_pairs.eval.tsv", fixture, 900, 2, false, {Split::val});
}

TEST(FuzzLoader, TextTsv) {
  TempDir dir;
  testing::write_bytes(dir / "test.tsv", "0\tx\n");
  const std::string fixture = "label\ttext\r\n1\tfine film\r\n0\tno\xe9\n1\tok";
  fuzz_file("text", dir.path(), dir / "train.tsv", fixture, 400, 3, false, {Split::train});
}

TEST(FuzzLoader, CifarBin) {
  TempDir dir;
  std::string rec(image::record_bytes, '\x80');
  rec[0] = 3;
  for (int b = 1; b <= 5; ++b) testing::write_bytes(dir / ("data_batch_" + std::to_string(b) + ".bin"), rec + rec);
  std::mt19937_64 g(4);
  Outcome outcome;
  auto node = testing::section("image", dir.path());
  for (int m = 0; m < 300; ++m) {
    std::string bytes = rec + rec;
    // Mutations on a .bin: labels and lengths matter; keep them small so most are labels.
    std::size_t at = (g() % 2) * image::record_bytes;
    if (g() % 2) bytes[at] = static_cast<char>(g() % 12);
    else bytes = mutate(bytes.substr(0, 40), g) + bytes.substr(40);
    testing::write_bytes(dir / "test_batch.bin", bytes);
    load_all(node, outcome, {Split::test});
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(outcome.rejected, 0);
  EXPECT_GT(outcome.loaded, 0);
}

TEST(FuzzLoader, CacheFileNeverTrusted) {
  TempDir dir;
  testing::write_bytes(dir / "basic_val.tsv",
                       "Source\tTarget\n( ( ( [MAX 2 ) 9 ) ] )\t9\n( ( ( ( ( [MED 3 ) 1 ) 4 ) 2 ) ] )\t2\n");
  auto node = testing::section("listops", dir.path(), true);
  auto reference = testing::load(node, Split::val);
  std::string cache_file;
  for (const auto& entry : std::filesystem::directory_iterator(dir / ".lra_cache")) cache_file = entry.path().string();
  ASSERT_FALSE(cache_file.empty());
  const std::string good = testing::read_bytes(cache_file);
  std::mt19937_64 g(5);
  for (int m = 0; m < 500; ++m) {
    testing::write_bytes(cache_file, mutate(good, g));
    auto data = testing::load(node, Split::val);  // a bad cache is rebuilt: same data
    ASSERT_EQ(data->size(), reference->size());
    for (int64_t i = 0; i < data->size(); ++i) {
      ASSERT_EQ(data->example(i).tokens, reference->example(i).tokens);
      ASSERT_EQ(data->example(i).label, reference->example(i).label);
    }
  }
}

}  // namespace
}  // namespace lra::tasks
