// The binary split cache: exact round trip, every corruption and truncation detected,
// stale keys (size or mtime changed) rebuilt, and loads through the registry unchanged.
#include "tasks/cache.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <utime.h>

#include <filesystem>

#include "core/error.h"
#include "task_fixtures.h"

namespace lra::tasks {
namespace {

using testing::TempDir;

std::vector<Example> sample(int32_t big) {
  std::vector<Example> ex(3);
  ex[0].tokens = {1, 2, 3};
  ex[0].label = 4;
  ex[1].tokens = {big, 7};
  ex[1].tokens2 = {9};
  ex[1].label = 1;
  ex[2].tokens = {5};
  ex[2].label = 0;
  return ex;
}

void expect_same(const std::vector<Example>& a, const std::vector<Example>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].tokens, b[i].tokens);
    EXPECT_EQ(a[i].tokens2, b[i].tokens2);
    EXPECT_EQ(a[i].label, b[i].label);
  }
}

TEST(Cache, RoundTripBothWidths) {
  for (int32_t big : {300, 70000}) {
    std::string bytes = encode_cache("key", sample(big));
    std::vector<Example> back;
    std::string why;
    ASSERT_TRUE(decode_cache(bytes, "key", back, why)) << why;
    expect_same(back, sample(big));
    EXPECT_FALSE(decode_cache(bytes, "other key", back, why));
    EXPECT_NE(why.find("stale"), std::string::npos);
  }
}

TEST(Cache, EveryFlippedByteAndTruncationIsDetected) {
  std::string good = encode_cache("k", sample(300));
  std::vector<Example> back;
  std::string why;
  for (std::size_t i = 0; i < good.size(); ++i)
    for (unsigned char flip : {0x01, 0x80}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ flip);
      EXPECT_FALSE(decode_cache(bad, "k", back, why)) << "byte " << i;
    }
  for (std::size_t n = 0; n < good.size(); ++n)
    EXPECT_FALSE(decode_cache(good.substr(0, n), "k", back, why)) << "length " << n;
  EXPECT_FALSE(decode_cache(good + "x", "k", back, why));
}

TEST(Cache, StaleOrCorruptFilesAreRebuilt) {
  TempDir dir;
  const std::string source = dir / "source.txt";
  testing::write_bytes(source, "v1");
  int builds = 0;
  auto build = [&] {
    ++builds;
    auto ex = sample(300);
    ex[0].label = static_cast<int32_t>(testing::read_bytes(source).size());
    return ex;
  };
  CacheOptions options{true, dir.path(), ""};
  auto first = cached_load(options, "unit", "params", {source}, build);
  EXPECT_FALSE(first.from_cache);
  EXPECT_EQ(builds, 1);
  ASSERT_EQ(first.path.rfind(dir / ".lra_cache/unit_", 0), 0u) << first.path;
  auto second = cached_load(options, "unit", "params", {source}, build);
  EXPECT_TRUE(second.from_cache);
  EXPECT_EQ(builds, 1);
  expect_same(second.examples, first.examples);

  // Different parameters: another file, built once.
  EXPECT_FALSE(cached_load(options, "unit", "params2", {source}, build).from_cache);
  EXPECT_EQ(builds, 2);

  // Source grows: stale, rebuilt with the new contents, same file name.
  testing::write_bytes(source, "v1 longer");
  auto third = cached_load(options, "unit", "params", {source}, build);
  EXPECT_FALSE(third.from_cache);
  EXPECT_EQ(third.path, first.path);
  EXPECT_NE(third.rebuilt_because.find("stale"), std::string::npos) << third.rebuilt_because;
  EXPECT_EQ(third.examples[0].label, 9);

  // Same size, only the modification time changes: stale.
  struct utimbuf times {1000000000, 1000000000};
  ASSERT_EQ(::utime(source.c_str(), &times), 0);
  EXPECT_FALSE(cached_load(options, "unit", "params", {source}, build).from_cache);
  EXPECT_TRUE(cached_load(options, "unit", "params", {source}, build).from_cache);

  // Corrupt one payload byte: detected by the checksum and rebuilt.
  std::string bytes = testing::read_bytes(first.path);
  bytes[bytes.size() - 12] = static_cast<char>(bytes[bytes.size() - 12] ^ 0x10);
  testing::write_bytes(first.path, bytes);
  auto fourth = cached_load(options, "unit", "params", {source}, build);
  EXPECT_FALSE(fourth.from_cache);
  EXPECT_NE(fourth.rebuilt_because.find("checksum"), std::string::npos) << fourth.rebuilt_because;
  expect_same(fourth.examples, build());
  EXPECT_TRUE(cached_load(options, "unit", "params", {source}, build).from_cache);

  // Explicit cache_dir and a disabled cache.
  CacheOptions elsewhere{true, dir.path(), dir / "elsewhere"};
  EXPECT_EQ(cached_load(elsewhere, "unit", "params", {source}, build).path.rfind(dir / "elsewhere/unit_", 0), 0u);
  CacheOptions off{false, dir.path(), ""};
  auto none = cached_load(off, "unit", "params", {source}, build);
  EXPECT_FALSE(none.from_cache);
  EXPECT_TRUE(none.path.empty());
  // A missing source is an error naming it.
  EXPECT_THROW(cached_load(options, "unit", "params", {dir / "missing"}, build), Error);
}

TEST(Cache, RegistryLoadsAgreeWithAndWithoutCache) {
  TempDir dir;
  testing::write_bytes(dir / "new_aan_pairs.test.tsv", "1\ta\tb\tb'x\\xe9y'\tz\n0\tc\td\tlong text\tw\n");
  auto plain = testing::load(testing::section("retrieval", dir.path(), false), Split::test);
  auto cached1 = testing::load(testing::section("retrieval", dir.path(), true), Split::test);
  auto cached2 = testing::load(testing::section("retrieval", dir.path(), true), Split::test);
  for (const auto* d : {cached1.get(), cached2.get()}) {
    ASSERT_EQ(d->size(), plain->size());
    EXPECT_TRUE(d->pairs());
    for (int64_t i = 0; i < d->size(); ++i) {
      EXPECT_EQ(d->example(i).tokens, plain->example(i).tokens);
      EXPECT_EQ(d->example(i).tokens2, plain->example(i).tokens2);
      EXPECT_EQ(d->example(i).label, plain->example(i).label);
    }
  }
  EXPECT_TRUE(std::filesystem::exists(dir / ".lra_cache"));
}

}  // namespace
}  // namespace lra::tasks
