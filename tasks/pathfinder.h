#pragma once
// Pathfinder (32x32) and Path-X (128x128) in the LRA release layout:
//   <data_dir>/<difficulty>/metadata/<k>.npy   text, one line per image, 11 fields
//   <data_dir>/<difficulty>/imgs/<k>/sample_<j>.png
// Tokens are pixel + 1 (vocabulary 257, 0 = padding): the Nystromformer LRA code
// treated id 0 as padding and so masked every black pixel; shifting keeps black a token.
#include <cstdint>
#include <string>
#include <vector>

#include "tasks/dataset.h"

namespace lra::tasks {

struct PathfinderLoadOptions {
  std::string data_dir;
  std::string difficulty = "curv_contour_length_14";
  int side = 32;          // 32 (Pathfinder) or 128 (Path-X)
  bool cache = true;      // binary cache of the decoded images
  std::string cache_dir;  // empty: <data_dir>/.lra_cache
};

// Every non-empty image of one difficulty folder, in metadata order (files sorted by
// their numeric name, lines in file order).
struct PathfinderSet {
  int side = 0;
  std::vector<uint8_t> labels;  // per image, 0 or 1
  std::vector<uint8_t> pixels;  // side * side per image
  int64_t lines = 0;            // metadata records read
  int64_t empty = 0;            // all-zero images skipped
  bool from_cache = false;
  std::string cache_path;  // the cache file read or written ("" when none)
  std::string cache_note;  // why an existing cache was rebuilt, or why none was written
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  const uint8_t* image(int64_t i) const { return pixels.data() + i * side * side; }
};

// Reads, validates and decodes a difficulty folder (in parallel), through the cache
// when enabled. Any bad record throws lra::Error naming the metadata file and line.
PathfinderSet read_pathfinder_set(const PathfinderLoadOptions& options);

// The image indices of a split: a permutation of [0, n) fixed by `split_seed`, cut
// 80/10/10 (train n*8/10, val n/10, test the rest), each split in ascending order.
std::vector<int64_t> pathfinder_split(int64_t n, uint64_t split_seed, Split split);

}  // namespace lra::tasks
