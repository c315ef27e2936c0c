// ListOps: tokenizer ids, evaluator and Source rendering against hand-worked expressions,
// the TSV loader on fixtures (CRLF, missing final newline, bad lines), and the generator's
// statistics against an independent Monte Carlo re-implementation of LRA's recursion.
#include "tasks/listops.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "core/error.h"
#include "core/parallel.h"
#include "task_fixtures.h"

namespace lra::tasks {
namespace {

using testing::TempDir;

std::vector<int32_t> ids_of(const std::string& source) {
  std::vector<int32_t> ids;
  std::string error;
  EXPECT_TRUE(listops::tokenize(source, ids, error)) << error;
  return ids;
}

TEST(ListopsTokenizer, HandComputedIds) {
  // Vocabulary: 0 pad, digit d -> d + 1, [MIN 11, [MAX 12, [MED 13, [SM 14, ] 15.
  EXPECT_EQ(ids_of("( ( ( [MAX 2 ) 9 ) ] )"), (std::vector<int32_t>{12, 3, 10, 15}));
  EXPECT_EQ(ids_of("( ( [MIN 0 ) ( ( [SM 7 ) ] ) ] )"), (std::vector<int32_t>{11, 1, 14, 8, 15, 15}));
  EXPECT_EQ(ids_of("[MED  5 ]"), (std::vector<int32_t>{13, 6, 15}));  // doubled space tolerated
  std::vector<int32_t> ids;
  std::string error;
  EXPECT_FALSE(listops::tokenize("( [FIRST 1 ] )", ids, error));
  EXPECT_NE(error.find("[FIRST"), std::string::npos);
  EXPECT_FALSE(listops::tokenize("[MAX 12 ]", ids, error));
  EXPECT_EQ(listops::token_word(12), "[MAX");
  EXPECT_EQ(listops::token_word(1), "0");
}

TEST(ListopsEvaluator, HandEvaluatedExpressions) {
  struct Case {
    const char* expr;
    int value;
  };
  const Case cases[] = {
      {"[MAX 2 9 ]", 9},
      {"[MIN 3 [MAX 1 0 ] 2 ]", 1},
      {"[MED 1 2 ]", 1},          // median 1.5 -> 1
      {"[MED 3 1 4 2 ]", 2},      // even count: (2 + 3) / 2 = 2.5 -> 2
      {"[MED 9 8 ]", 8},          // 8.5 -> 8
      {"[MED 5 1 9 ]", 5},
      {"[SM 9 8 7 ]", 4},         // 24 mod 10
      {"[SM [MAX 9 9 ] [MED 2 4 6 8 ] 3 ]", 7},  // 9 + 5 + 3 = 17
      {"[MIN [SM 5 5 ] [MAX 0 4 ] ]", 0},
      {"7", 7},
  };
  for (const auto& c : cases) EXPECT_EQ(listops::evaluate(ids_of(c.expr)), c.value) << c.expr;
}

TEST(ListopsEvaluator, MalformedExpressionsAreErrors) {
  for (const char* bad : {"[MAX 2 9", "]", "[MAX ]", "[MAX 2 ] 3", "", "3 4"}) {
    auto ids = ids_of(bad);
    EXPECT_THROW(listops::evaluate(ids), Error) << bad;
  }
}

TEST(ListopsSource, MatchesLraNestedPairRendering) {
  // Hand-written from LRA's to_string: each (a, b) pair becomes "( a b )".
  EXPECT_EQ(listops::to_source(std::vector<int32_t>{12, 3, 10, 15}.data(), 4), "( ( ( [MAX 2 ) 9 ) ] )");
  auto ids = ids_of("[SM [MIN 1 2 ] 3 ]");
  EXPECT_EQ(listops::to_source(ids.data(), ids.size()), "( ( ( [SM ( ( ( [MIN 1 ) 2 ) ] ) ) 3 ) ] )");
  std::vector<int32_t> leaf{6};
  EXPECT_EQ(listops::to_source(leaf.data(), 1), "5");
  // Tokenizing the rendering gives back the ids.
  EXPECT_EQ(ids_of(listops::to_source(ids.data(), ids.size())), ids);
}

TEST(ListopsLoader, ReadsCrlfAndMissingTrailingNewline) {
  TempDir dir;
  testing::write_bytes(dir / "basic_train.tsv",
                       "Source\tTarget\r\n( ( ( [MAX 2 ) 9 ) ] )\t9\r\n"
                       "( ( ( ( ( [MED 3 ) 1 ) 4 ) 2 ) ] )\t2");  // no final newline
  testing::write_bytes(dir / "basic_val.tsv", "Source\tTarget\n( ( ( [SM 9 ) 8 ) ] )\t7\n\n");
  auto train = testing::load(testing::section("listops", dir.path()), Split::train);
  ASSERT_EQ(train->size(), 2);
  EXPECT_EQ(train->example(0).tokens, (std::vector<int32_t>{12, 3, 10, 15}));
  EXPECT_EQ(train->example(0).label, 9);
  EXPECT_EQ(train->example(1).tokens, (std::vector<int32_t>{13, 4, 2, 5, 3, 15}));
  EXPECT_EQ(train->example(1).label, 2);
  EXPECT_EQ(train->num_classes(), 10);
  EXPECT_EQ(train->vocab_size(), 16);
  auto val = testing::load(testing::section("listops", dir.path()), Split::val);
  ASSERT_EQ(val->size(), 1);
  EXPECT_EQ(val->example(0).label, 7);
}

void expect_error(const std::string& dir_path, const std::string& text, const std::string& fragment,
                  YAML::Node node = YAML::Node(YAML::NodeType::Undefined)) {
  testing::write_bytes(dir_path + "/basic_test.tsv", text);
  if (!node.IsMap()) node = testing::section("listops", dir_path);
  try {
    testing::load(node, Split::test);
    ADD_FAILURE() << "no error for: " << text;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(ListopsLoader, BadInputNamesFileAndLine) {
  TempDir dir;
  const std::string file = dir / "basic_test.tsv";
  const std::string head = "Source\tTarget\r\n( ( ( [MAX 2 ) 9 ) ] )\t9\r\n";
  expect_error(dir.path(), head + "( ( ( [MAX 2 ) 9 ) ] )\t9\textra\r\n", file + ":3: expected 2");
  expect_error(dir.path(), head + "( ( ( [MAX 2 ) 9 ) ] )\t10\r\n", file + ":3: Target '10'");
  expect_error(dir.path(), head + "( ( ( [MAX 2 ) 9 ) ] )\tnine\r\n", file + ":3: Target 'nine'");
  expect_error(dir.path(), head + "( ( ( [MAX 2 ) 9 ) ] )\t4\r\n", file + ":3: Target 4 but the expression evaluates to 9");
  expect_error(dir.path(), head + "( ( [MAX 2 ) 9 )\t9\r\n", file + ":3: malformed expression");
  expect_error(dir.path(), head + "( ( [MAX 2 ) x )\t9\r\n", file + ":3: unknown word 'x'");
  expect_error(dir.path(), "Input\tOutput\n1\t1\n", file + ":1: expected the header");
  expect_error(dir.path(), "", "empty file");
  // A wrong target loads when verification is switched off.
  testing::write_bytes(file, head + "( ( ( [MAX 2 ) 9 ) ] )\t4\r\n");
  auto node = testing::section("listops", dir.path());
  node["verify_targets"] = false;
  EXPECT_EQ(testing::load(node, Split::test)->example(1).label, 4);
}

TEST(ListopsLoader, ConfigKeysAreValidated) {
  TempDir dir;
  testing::write_bytes(dir / "basic_test.tsv", "Source\tTarget\n( ( ( [MAX 2 ) 9 ) ] )\t9\n");
  auto node = testing::section("listops", dir.path());
  node["max_lenn"] = 3;
  expect_error(dir.path(), "Source\tTarget\n( ( ( [MAX 2 ) 9 ) ] )\t9\n", "test.task: unknown key 'max_lenn'", node);
  node = testing::section("listops", dir.path());
  node["max_len"] = "long";
  expect_error(dir.path(), "Source\tTarget\n( ( ( [MAX 2 ) 9 ) ] )\t9\n", "test.task.max_len: expected an integer",
               node);
  node = testing::section("listops", dir.path());
  node["max_len"] = 2;  // truncation keeps the first ids
  testing::write_bytes(dir / "basic_test.tsv", "Source\tTarget\n( ( ( [MAX 2 ) 9 ) ] )\t9\n");
  EXPECT_EQ(testing::load(node, Split::test)->example(0).tokens, (std::vector<int32_t>{12, 3}));
}

// ---- generator

// Independent re-implementation of LRA's generate_tree + evaluate, producing (value,
// length) directly with a different random engine.
struct McTree {
  int value;
  int64_t length;
};

McTree mc_tree(std::mt19937_64& g, int depth) {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  double r = depth < 10 ? unit(g) : 1.0;
  if (r > 0.25) return {static_cast<int>(g() % 10), 1};
  int n = 2 + static_cast<int>(g() % 9);
  std::vector<int> v;
  int64_t length = 2;
  for (int i = 0; i < n; ++i) {
    McTree c = mc_tree(g, depth + 1);
    v.push_back(c.value);
    length += c.length;
  }
  switch (g() % 4) {
    case 0: return {*std::min_element(v.begin(), v.end()), length};
    case 1: return {*std::max_element(v.begin(), v.end()), length};
    case 2: {
      std::sort(v.begin(), v.end());
      double median = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
      return {static_cast<int>(median), length};
    }
    default: {
      int sum = 0;
      for (int x : v) sum += x;
      return {sum % 10, length};
    }
  }
}

TEST(ListopsGenerator, StatisticsMatchIndependentMonteCarlo) {
  const int64_t count = 4000;
  listops::GeneratorStats stats;
  auto trees = listops::generate(7, count, {}, &stats);
  ASSERT_EQ(static_cast<int64_t>(trees.size()), count);
  std::set<std::vector<int32_t>> distinct(trees.begin(), trees.end());
  EXPECT_EQ(static_cast<int64_t>(distinct.size()), count);
  EXPECT_EQ(stats.candidates, count + stats.rejected_length + stats.duplicates);

  std::vector<double> gen_p(10, 0.0);
  double gen_mean_len = 0;
  for (const auto& t : trees) {
    ASSERT_GT(t.size(), 500u);
    ASSERT_LT(t.size(), 2000u);
    int value = listops::evaluate(t);
    gen_p[static_cast<std::size_t>(value)] += 1.0 / count;
    gen_mean_len += static_cast<double>(t.size()) / count;
    // Length as LRA counts it = operators + values + closing brackets = token count.
    auto ops = std::count_if(t.begin(), t.end(), [](int32_t id) { return id >= 11 && id <= 14; });
    ASSERT_EQ(ops, std::count(t.begin(), t.end(), listops::end_id));
  }

  std::mt19937_64 g(12345);
  const int64_t mc_target = 15000;
  int64_t accepted = 0, drawn = 0;
  std::vector<double> mc_p(10, 0.0);
  double mc_mean_len = 0;
  while (accepted < mc_target) {
    McTree t = mc_tree(g, 1);
    ++drawn;
    if (t.length > 500 && t.length < 2000) {
      ++accepted;
      mc_p[static_cast<std::size_t>(t.value)] += 1.0 / mc_target;
      mc_mean_len += static_cast<double>(t.length) / mc_target;
    }
  }
  // The distribution is skewed (0 and 9 are the most frequent classes), not uniform.
  EXPECT_GT(mc_p[0], 0.13);
  EXPECT_GT(mc_p[9], 0.13);
  for (int c = 0; c < 10; ++c)
    EXPECT_NEAR(gen_p[static_cast<std::size_t>(c)], mc_p[static_cast<std::size_t>(c)], 0.025) << "class " << c;
  EXPECT_NEAR(gen_mean_len, mc_mean_len, 30.0);
  // Acceptance rate of the length filter agrees too (binomial, ~1e5 draws each).
  double gen_accept = static_cast<double>(count) / static_cast<double>(stats.candidates);
  double mc_accept = static_cast<double>(mc_target) / static_cast<double>(drawn);
  EXPECT_NEAR(gen_accept, mc_accept, 0.15 * mc_accept);
}

TEST(ListopsGenerator, DeterministicForAnyThreadCount) {
  int saved = core::num_threads();
  core::set_num_threads(1);
  auto a = listops::generate(99, 300, {});
  core::set_num_threads(std::max(2, saved));
  auto b = listops::generate(99, 300, {});
  core::set_num_threads(saved);
  EXPECT_EQ(a, b);
  auto c = listops::generate(100, 300, {});
  EXPECT_NE(a, c);
  std::vector<int32_t> x, y;
  for (uint64_t i = 0; i < 50; ++i) {
    bool ok_x = listops::generate_candidate(5, i, {}, x);
    bool ok_y = listops::generate_candidate(5, i, {}, y);
    EXPECT_EQ(ok_x, ok_y);
    if (ok_x) {
      EXPECT_EQ(x, y);
    }
  }
}

TEST(ListopsGenerator, WriteThenReadRoundTrip) {
  TempDir dir;
  listops::GeneratorConfig config;
  config.train = 120;
  config.val = 10;
  config.test = 15;
  listops::generate_files(dir.path(), 3, config);
  auto trees = listops::generate(3, 145, config);
  std::string text = testing::read_bytes(dir / "basic_train.tsv");
  EXPECT_EQ(text.rfind("Source\tTarget\r\n", 0), 0u);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 121);
  EXPECT_EQ(std::count(text.begin(), text.end(), '('), std::count(text.begin(), text.end(), ')'));
  std::size_t offset = 0;
  for (auto split : {Split::train, Split::val, Split::test}) {
    auto data = testing::load(testing::section("listops", dir.path(), true), split);
    for (int64_t i = 0; i < data->size(); ++i) {
      const auto& t = trees[offset + static_cast<std::size_t>(i)];
      EXPECT_EQ(data->example(i).tokens, t);
      EXPECT_EQ(data->example(i).label, listops::evaluate(t));
    }
    offset += static_cast<std::size_t>(data->size());
    // Second load comes from the cache and agrees.
    auto again = testing::load(testing::section("listops", dir.path(), true), split);
    ASSERT_EQ(again->size(), data->size());
    for (int64_t i = 0; i < data->size(); ++i) EXPECT_EQ(again->example(i).tokens, data->example(i).tokens);
  }
  EXPECT_EQ(offset, 145u);
}

}  // namespace
}  // namespace lra::tasks
