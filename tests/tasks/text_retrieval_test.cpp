// Text (aclImdb folders and label<TAB>text TSV) and Retrieval (new_aan_pairs TSV with
// Python bytes literals): byte ids against hand-computed ones, truncation, splits, and
// errors naming file and line.
#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "task_fixtures.h"
#include "tasks/retrieval.h"

namespace lra::tasks {
namespace {

using testing::bytes_plus_one;
using testing::TempDir;

void write_imdb(const std::string& root) {
  // train: 4 neg, 6 pos; test: 1 neg, 2 pos. Names as in the release: <id>_<rating>.txt
  for (int i = 0; i < 4; ++i) testing::write_bytes(root + "/train/neg/" + std::to_string(i) + "_2.txt", "bad " + std::to_string(i));
  for (int i = 0; i < 6; ++i) testing::write_bytes(root + "/train/pos/" + std::to_string(i) + "_9.txt", "good " + std::to_string(i));
  testing::write_bytes(root + "/test/neg/10_1.txt", "awful\r\nreally");
  testing::write_bytes(root + "/test/neg/9_1.txt", "meh \xe9");
  testing::write_bytes(root + "/test/pos/0_10.txt", "great<br />film");
  testing::write_bytes(root + "/test/pos/notes.md", "ignored");
  testing::write_bytes(root + "/train/unsup/0_0.txt", "unlabelled, ignored");
}

TEST(TextLoader, ImdbLayoutIdsLabelsAndOrder) {
  TempDir dir;
  write_imdb(dir.path());
  auto node = testing::section("text", dir.path());
  node["val"] = "test";
  auto test = testing::load(node, Split::test);
  ASSERT_EQ(test->size(), 3);
  // neg first, files by numeric id: 9_1 before 10_1.
  EXPECT_EQ(test->example(0).tokens, (std::vector<int32_t>{'m' + 1, 'e' + 1, 'h' + 1, ' ' + 1, 0xe9 + 1}));
  EXPECT_EQ(test->example(0).label, 0);
  EXPECT_EQ(test->example(1).tokens, bytes_plus_one("awful\r\nreally"));
  EXPECT_EQ(test->example(2).tokens, bytes_plus_one("great<br />film"));
  EXPECT_EQ(test->example(2).label, 1);
  EXPECT_EQ(test->vocab_size(), 257);
  auto train = testing::load(node, Split::train);
  EXPECT_EQ(train->size(), 10);
  auto val = testing::load(node, Split::val);  // val: test, as LRA's code
  EXPECT_EQ(val->size(), 3);
  node["max_len"] = 3;
  EXPECT_EQ(testing::load(node, Split::test)->example(1).tokens, bytes_plus_one("awf"));
}

TEST(TextLoader, SeededHoldoutPartitionsTrain) {
  TempDir dir;
  write_imdb(dir.path());
  auto node = testing::section("text", dir.path());
  node["val_fraction"] = 0.3;
  auto train = testing::load(node, Split::train);
  auto val = testing::load(node, Split::val);
  EXPECT_EQ(val->size(), 3);
  EXPECT_EQ(train->size(), 7);
  std::multiset<std::vector<int32_t>> all;
  for (const auto* d : {train.get(), val.get()})
    for (int64_t i = 0; i < d->size(); ++i) all.insert(d->example(i).tokens);
  std::multiset<std::vector<int32_t>> expected;
  for (int i = 0; i < 4; ++i) expected.insert(bytes_plus_one("bad " + std::to_string(i)));
  for (int i = 0; i < 6; ++i) expected.insert(bytes_plus_one("good " + std::to_string(i)));
  EXPECT_EQ(all, expected);
  // Same seed, same holdout; another seed moves it.
  auto again = testing::load(node, Split::val);
  for (int64_t i = 0; i < val->size(); ++i) EXPECT_EQ(again->example(i).tokens, val->example(i).tokens);
  bool differs = false;
  for (int seed = 1; seed < 6 && !differs; ++seed) {
    node["val_seed"] = seed;
    auto other = testing::load(node, Split::val);
    for (int64_t i = 0; i < other->size(); ++i) differs |= other->example(i).tokens != val->example(i).tokens;
  }
  EXPECT_TRUE(differs);
}

TEST(TextLoader, TsvFormatAndErrors) {
  TempDir dir;
  testing::write_bytes(dir / "train.tsv", "label\ttext\r\n1\tfine\tfilm\r\n0\tno");
  testing::write_bytes(dir / "test.tsv", "0\tx\n");
  testing::write_bytes(dir / "val.tsv", "1\tyes\n");
  auto node = testing::section("text", dir.path());
  auto train = testing::load(node, Split::train);
  ASSERT_EQ(train->size(), 2);
  EXPECT_EQ(train->example(0).tokens, bytes_plus_one("fine\tfilm"));
  EXPECT_EQ(train->example(0).label, 1);
  EXPECT_EQ(train->example(1).tokens, bytes_plus_one("no"));
  EXPECT_EQ(testing::load(node, Split::val)->example(0).tokens, bytes_plus_one("yes"));  // val.tsv used
  testing::write_bytes(dir / "test.tsv", "0\tx\n2\ty\n");
  try {
    testing::load(node, Split::test);
    ADD_FAILURE() << "label 2 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir / "test.tsv" + ":2: label '2'"), std::string::npos) << e.what();
  }
  testing::write_bytes(dir / "test.tsv", "0\tx\n1 missing tab\n");
  EXPECT_THROW(testing::load(node, Split::test), Error);
  node["format"] = "csv";
  try {
    testing::load(node, Split::test);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("test.task.format: 'csv'"), std::string::npos) << e.what();
  }
}

TEST(RetrievalDecode, PythonBytesLiterals) {
  std::string out, error;
  ASSERT_TRUE(retrieval::decode_field("b'caf\\xe9\\nline\\t2 \\\\ \\' end'", out, error)) << error;
  EXPECT_EQ(out, "caf\xe9\nline\t2 \\ ' end");
  ASSERT_TRUE(retrieval::decode_field("b\"it's \\\"q\\\"\"", out, error)) << error;
  EXPECT_EQ(out, "it's \"q\"");
  ASSERT_TRUE(retrieval::decode_field("b'\\101\\0z\\q\\r'", out, error)) << error;
  EXPECT_EQ(out, std::string("A\0z\\q\r", 6));  // octal, NUL, unknown escape kept
  ASSERT_TRUE(retrieval::decode_field("plain text 'quoted'", out, error));
  EXPECT_EQ(out, "plain text 'quoted'");
  ASSERT_TRUE(retrieval::decode_field("b'", out, error));  // too short to be a literal
  EXPECT_EQ(out, "b'");
  EXPECT_FALSE(retrieval::decode_field("b'\\xZ1'", out, error));
  EXPECT_FALSE(retrieval::decode_field("b'\\x4'", out, error));
  EXPECT_FALSE(retrieval::decode_field("b'a'b'", out, error));
  EXPECT_FALSE(retrieval::decode_field("b'ab\\'", out, error));
}

TEST(RetrievalLoader, PairsFromAanTsv) {
  TempDir dir;
  testing::write_bytes(dir / "new_aan_pairs.train.tsv",
                       "1\tP00-1001\tP01-2002\tb'first\\ndoc'\tb'caf\\xe9'\r\n"
                       "0.0\tA\tB\tplain one\tb\"it's\"");  // no final newline
  auto node = testing::section("retrieval", dir.path());
  auto train = testing::load(node, Split::train);
  ASSERT_EQ(train->size(), 2);
  EXPECT_TRUE(train->pairs());
  EXPECT_EQ(train->example(0).label, 1);
  EXPECT_EQ(train->example(0).tokens, bytes_plus_one("first\ndoc"));
  EXPECT_EQ(train->example(0).tokens2, (std::vector<int32_t>{'c' + 1, 'a' + 1, 'f' + 1, 0xe9 + 1}));
  EXPECT_EQ(train->example(1).label, 0);
  EXPECT_EQ(train->example(1).tokens, bytes_plus_one("plain one"));
  EXPECT_EQ(train->example(1).tokens2, bytes_plus_one("it's"));
  node["max_len"] = 3;  // each document truncated separately, after unescaping
  auto cut = testing::load(node, Split::train);
  EXPECT_EQ(cut->example(0).tokens, bytes_plus_one("fir"));
  EXPECT_EQ(cut->example(0).tokens2, bytes_plus_one("caf"));
  EXPECT_EQ(cut->example(1).tokens2, bytes_plus_one("it'"));

  // make_batch on pairs: both documents padded, masks match.
  auto batch = make_batch(*train, {1, 0}, 12);
  ASSERT_EQ(batch.ids2.size(), 24u);
  EXPECT_EQ(batch.ids2[0], 'i' + 1);
  EXPECT_EQ(batch.ids2[4], 0);
  EXPECT_EQ(batch.mask2.data<float>()[3], 1.0f);
  EXPECT_EQ(batch.mask2.data<float>()[4], 0.0f);
  EXPECT_EQ(batch.labels, (std::vector<int32_t>{0, 1}));
}

TEST(RetrievalLoader, ErrorsNameFileAndLine) {
  TempDir dir;
  const std::string file = dir / "new_aan_pairs.eval.tsv";
  auto node = testing::section("retrieval", dir.path());
  auto expect = [&](const std::string& text, const std::string& fragment) {
    testing::write_bytes(file, text);
    try {
      testing::load(node, Split::val);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  const std::string good = "1\ta\tb\tx\ty\n";
  expect(good + "1\ta\tb\tx\n", file + ":2: expected 5 tab-separated fields");
  expect(good + "2\ta\tb\tx\ty\n", file + ":2: label '2'");
  expect(good + good + "1\ta\tb\tb'\\xg0'\ty\n", file + ":3: text1: bytes literal");
  expect(good + "1\ta\tb\tx\t\n", file + ":2: text2 is empty");
  expect("", file + ": no examples");
  testing::write_bytes(file, good);
  node["format"] = "tsv";  // not a retrieval key
  expect(good, "test.task: unknown key 'format' for task 'retrieval'");
}

}  // namespace
}  // namespace lra::tasks
