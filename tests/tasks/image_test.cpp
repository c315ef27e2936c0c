// Image (CIFAR-10 binary): grayscale against hand-computed values and a float64
// re-derivation, record parsing, the 45K/5K-style split, and truncated/bad records.
#include "tasks/image.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "task_fixtures.h"

namespace lra::tasks {
namespace {

using testing::TempDir;

TEST(ImageGrayscale, HandComputedValues) {
  // trunc(255.5 * (0.2989 r + 0.5870 g + 0.1140 b) / 255)
  EXPECT_EQ(image::grayscale(0, 0, 0), 0);
  EXPECT_EQ(image::grayscale(255, 255, 255), 255);  // 255.474...
  EXPECT_EQ(image::grayscale(255, 0, 0), 76);       // 76.369...
  EXPECT_EQ(image::grayscale(0, 255, 0), 149);      // 149.978...
  EXPECT_EQ(image::grayscale(0, 0, 255), 29);       // 29.127
  EXPECT_EQ(image::grayscale(100, 150, 200), 141);  // 140.74 * 255.5 / 255 = 141.016
}

TEST(ImageGrayscale, AgreesWithFloat64AwayFromRoundingEdges) {
  int checked = 0;
  for (int r = 0; r < 256; r += 5)
    for (int g = 0; g < 256; g += 3)
      for (int b = 0; b < 256; b += 7) {
        double y = (0.2989 * r + 0.5870 * g + 0.1140 * b) / 255.0 * 255.5;
        if (std::abs(y - std::round(y)) < 1e-3) continue;  // float32 may land either side
        ASSERT_EQ(image::grayscale(static_cast<uint8_t>(r), static_cast<uint8_t>(g), static_cast<uint8_t>(b)),
                  static_cast<int>(std::floor(std::min(y, 255.0))))
            << r << " " << g << " " << b;
        ++checked;
      }
  EXPECT_GT(checked, 50000);
}

// A record: label, then R, G, B planes; pixel p of record k has colour (k + p, 2p, 255 - p) mod 256.
std::string record(int label, int k) {
  std::string rec(image::record_bytes, '\0');
  rec[0] = static_cast<char>(label);
  for (int p = 0; p < 1024; ++p) {
    rec[static_cast<std::size_t>(1 + p)] = static_cast<char>((k + p) % 256);
    rec[static_cast<std::size_t>(1025 + p)] = static_cast<char>((2 * p) % 256);
    rec[static_cast<std::size_t>(2049 + p)] = static_cast<char>((255 - p % 256));
  }
  return rec;
}

void write_cifar(const std::string& dir, int per_batch) {
  for (int b = 1; b <= 5; ++b) {
    std::string bytes;
    for (int i = 0; i < per_batch; ++i) bytes += record((b + i) % 10, b * 100 + i);
    testing::write_bytes(dir + "/data_batch_" + std::to_string(b) + ".bin", bytes);
  }
  testing::write_bytes(dir + "/test_batch.bin", record(3, 7) + record(9, 8));
}

TEST(ImageLoader, RecordsSplitsAndIds) {
  TempDir dir;
  write_cifar(dir.path(), 4);  // 20 training records -> 18 train, last 2 val
  auto node = testing::section("image", dir.path());
  auto train = testing::load(node, Split::train);
  auto val = testing::load(node, Split::val);
  auto test = testing::load(node, Split::test);
  ASSERT_EQ(train->size(), 18);
  ASSERT_EQ(val->size(), 2);
  ASSERT_EQ(test->size(), 2);
  EXPECT_EQ(train->vocab_size(), 257);
  // val = records 2, 3 of data_batch_5 (k = 502, 503), labels (5 + i) % 10.
  EXPECT_EQ(val->example(0).label, 7);
  EXPECT_EQ(val->example(1).label, 8);
  for (int p : {0, 1, 37, 1023}) {
    int k = 503;
    auto expected = image::grayscale(static_cast<uint8_t>((k + p) % 256), static_cast<uint8_t>((2 * p) % 256),
                                     static_cast<uint8_t>(255 - p % 256));
    EXPECT_EQ(val->example(1).tokens[static_cast<std::size_t>(p)], expected + 1);
  }
  EXPECT_EQ(test->example(1).label, 9);
  EXPECT_EQ(train->example(0).tokens.size(), 1024u);
  EXPECT_EQ(train->example(5).label, (2 + 1) % 10);  // data_batch_2, record 1
  // A black pixel is id 1, never padding.
  testing::write_bytes(dir / "test_batch.bin", std::string(image::record_bytes, '\0'));
  EXPECT_EQ(testing::load(node, Split::test)->example(0).tokens[0], 1);
}

TEST(ImageLoader, TruncatedRecordAndBadLabel) {
  TempDir dir;
  write_cifar(dir.path(), 2);
  auto node = testing::section("image", dir.path());
  testing::write_bytes(dir / "test_batch.bin", record(1, 0) + record(2, 1).substr(0, 100));
  try {
    testing::load(node, Split::test);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir / "test_batch.bin" + ": truncated record 1 at byte offset 3073"),
              std::string::npos)
        << e.what();
  }
  testing::write_bytes(dir / "data_batch_3.bin", record(1, 0) + record(10, 1));
  try {
    testing::load(node, Split::train);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir / "data_batch_3.bin" + ": record 1 (byte offset 3073): label 10"),
              std::string::npos)
        << e.what();
  }
  std::filesystem::remove(dir / "data_batch_4.bin");
  EXPECT_THROW(testing::load(node, Split::val), Error);
  node["cache"] = true;  // the image task has no cache key
  EXPECT_THROW(testing::load(node, Split::test), Error);
}

}  // namespace
}  // namespace lra::tasks
