#pragma once
// An independent Pathfinder / Path-X generator with the statistics of Linsley et al.'s
// (the LRA settings, see README "Pathfinder"): two target snakes of soft dashed paddles
// starting near each other, distractor snakes, two markers; the label only decides
// whether the second marker ends the first marker's snake (1) or the other one (0).
// Every image is a pure function of (seed, image index), so generation is parallel
// and reproducible for any thread count.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace lra::tasks {

struct PathfinderParams {
  int resolution = 32;          // output side in pixels (32 or 128)
  int contour_length = 14;      // paddles per target snake (6, 9 or 14)
  int distractor_length = 4;    // paddles per distractor snake
  int distractor_slots = 5;     // distractor snakes tried (each up to 5 times)
  double paddle_length = 2.0;   // output pixels
  double thickness = 0.5;       // output pixels
  std::vector<int> margins{1};  // gap between paddles (output px), one drawn per image
  double continuity = 1.0;
  double seed_distance = 7.0;  // output pixels between the two target seeds
  double marker_radius = 1.5;  // output pixels
  double target_contrast = 1.5;
  double distractor_contrast = 2.0;
  int scale = 2;             // drawn at scale x resolution, then Lanczos-downsampled
  int candidates = 36;       // directions considered per continuation step
  int paddle_tries = 3;      // tries per paddle before the snake fails
  int distractor_tries = 5;  // tries per distractor slot
  // Extra clear space a new paddle's ink keeps from the occupancy mask, in units of
  // the image's margin: targets keep one margin from other ink, distractors two (their
  // footprint counts with its own margin), which places ~2 distractors per LRA-32
  // image and gives the official ~66% zero pixels.
  double target_clearance = 0.0;
  double distractor_clearance = 1.0;
};

// The settings for a resolution (32: LRA Pathfinder, 128: Path-X) and contour length
// (6, 9, 14); throws lra::Error for other values.
PathfinderParams pathfinder_params(int resolution, int contour_length);
// "curv_baseline" (6), "curv_contour_length_9", "curv_contour_length_14".
std::string pathfinder_difficulty(int contour_length);

struct PathfinderImage {
  std::vector<uint8_t> pixels;  // resolution x resolution, row-major
  int label = 0;
  int margin = 0;             // the paddle margin drawn (metadata field 9)
  double markers[2][2] = {};  // marker centres (x, y) in output pixels
  int distractors = 0;        // distractor snakes placed
  int restarts = 0;           // image restarts after a failed target snake
};

// The label of image `index`: images come in pairs (2m, 2m+1) whose labels are a
// fair-coin permutation of {0, 1}, so any even count is exactly balanced.
int pathfinder_label(uint64_t seed, int64_t index);
// Image `index` of the set generated from `seed`.
PathfinderImage generate_pathfinder_image(const PathfinderParams& params, uint64_t seed,
                                          int64_t index);

// Writes `count` images in the official layout:
// <out>/<difficulty>/imgs/<k>/sample_<j>.png and <out>/<difficulty>/metadata/<k>.npy
// (text, 11 fields per line), `batch_size` images per k. `progress(done, count)` is
// called after each batch (may be empty).
void write_pathfinder_set(const std::string& out_dir, uint64_t seed, const PathfinderParams& params,
                          int64_t count, int64_t batch_size,
                          const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace lra::tasks
