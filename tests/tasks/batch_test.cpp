// make_batch and epoch_order against hand-built expectations.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "core/error.h"
#include "tasks/dataset.h"
#include "tasks/task_io.h"

namespace lra::tasks {
namespace {

VectorDataset tiny(bool pairs) {
  std::vector<Example> ex(3);
  ex[0].tokens = {5, 6, 7};
  ex[0].label = 1;
  ex[1].tokens = {9};
  ex[1].label = 0;
  ex[2].tokens = {1, 2, 3, 4, 5, 6};
  ex[2].label = 2;
  if (pairs)
    for (auto& e : ex) e.tokens2 = {8, 8};
  return VectorDataset("tiny", std::move(ex), 3, 10, pairs);
}

TEST(MakeBatch, PadsTruncatesAndMasks) {
  auto data = tiny(false);
  Batch b = make_batch(data, {2, 1, 0}, 4);
  EXPECT_EQ(b.batch, 3);
  EXPECT_EQ(b.seq, 4);
  EXPECT_EQ(b.ids, (std::vector<int32_t>{1, 2, 3, 4, 9, 0, 0, 0, 5, 6, 7, 0}));
  std::vector<float> mask(b.mask.data<float>(), b.mask.data<float>() + 12);
  EXPECT_EQ(mask, (std::vector<float>{1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0}));
  EXPECT_EQ(b.labels, (std::vector<int32_t>{2, 0, 1}));
  EXPECT_TRUE(b.ids2.empty());

  Batch longest = make_batch(data, {1, 0}, 100, true, core::DType::f64);
  EXPECT_EQ(longest.seq, 3);
  EXPECT_EQ(longest.ids, (std::vector<int32_t>{9, 0, 0, 5, 6, 7}));
  EXPECT_EQ(longest.mask.data<double>()[1], 0.0);
  EXPECT_EQ(longest.mask.data<double>()[3], 1.0);
  EXPECT_THROW(make_batch(data, {3}, 4), Error);
  EXPECT_THROW(make_batch(data, {0}, 0), Error);
}

TEST(MakeBatch, PairsFillSecondDocuments) {
  auto data = tiny(true);
  Batch b = make_batch(data, {1}, 3);
  EXPECT_EQ(b.ids, (std::vector<int32_t>{9, 0, 0}));
  EXPECT_EQ(b.ids2, (std::vector<int32_t>{8, 8, 0}));
  EXPECT_EQ(b.mask2.data<float>()[1], 1.0f);
  EXPECT_EQ(b.mask2.data<float>()[2], 0.0f);
}

TEST(EpochOrder, PermutationDeterministicPerSeedAndEpoch) {
  auto a = epoch_order(1000, 42, 0);
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> iota(1000);
  std::iota(iota.begin(), iota.end(), 0);
  EXPECT_EQ(sorted, iota);
  EXPECT_EQ(a, epoch_order(1000, 42, 0));
  EXPECT_NE(a, epoch_order(1000, 42, 1));
  EXPECT_NE(a, epoch_order(1000, 43, 0));
  EXPECT_NE(a, iota);
  EXPECT_TRUE(epoch_order(0, 1, 0).empty());
  EXPECT_EQ(epoch_order(1, 1, 0), std::vector<int64_t>{0});
  // Roughly uniform: the position of element 0 over many epochs covers all slots of 4.
  std::set<int64_t> slots;
  for (int e = 0; e < 64; ++e) {
    auto o = epoch_order(4, 7, e);
    slots.insert(std::find(o.begin(), o.end(), 0) - o.begin());
  }
  EXPECT_EQ(slots.size(), 4u);
}

}  // namespace
}  // namespace lra::tasks
