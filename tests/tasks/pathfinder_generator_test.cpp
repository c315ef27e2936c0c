// The Pathfinder generator: determinism, official layout, exact label balance, image
// statistics, a pixel-statistics classifier that must stay at chance, and connectivity
// of the markers by ink (the task is solvable).
#include "tasks/pathfinder_generator.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/parallel.h"
#include "tasks/pathfinder.h"
#include "tasks/png_io.h"

namespace {

namespace fs = std::filesystem;
using namespace lra::tasks;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(PathfinderGenerator, ImagesArePureFunctionsOfSeedAndIndex) {
  PathfinderParams p = pathfinder_params(32, 14);
  auto a = generate_pathfinder_image(p, 7, 123);
  auto b = generate_pathfinder_image(p, 7, 123);
  EXPECT_EQ(a.pixels, b.pixels);
  EXPECT_EQ(a.label, b.label);
  EXPECT_NE(a.pixels, generate_pathfinder_image(p, 7, 124).pixels);
  EXPECT_NE(a.pixels, generate_pathfinder_image(p, 8, 123).pixels);
}

TEST(PathfinderGenerator, WritesOfficialLayoutIdenticallyForAnyThreadCount) {
  PathfinderParams p = pathfinder_params(32, 9);
  std::string base =
      (fs::temp_directory_path() / fmt::format("lra_pf_gen_{}", ::getpid())).string();
  fs::remove_all(base);
  int saved = lra::core::num_threads();
  lra::core::set_num_threads(1);
  write_pathfinder_set(base + "/a", 11, p, 23, 10);
  lra::core::set_num_threads(2);
  write_pathfinder_set(base + "/b", 11, p, 23, 10);
  lra::core::set_num_threads(saved);
  const std::string da = base + "/a/curv_contour_length_9", db = base + "/b/curv_contour_length_9";
  for (int k = 0; k < 3; ++k) {
    std::string meta = slurp(fmt::format("{}/metadata/{}.npy", da, k));
    EXPECT_EQ(meta, slurp(fmt::format("{}/metadata/{}.npy", db, k)));
    std::istringstream lines(meta);
    std::string line;
    int j = 0;
    while (std::getline(lines, line)) {
      std::istringstream fields(line);
      std::vector<std::string> f;
      for (std::string x; fields >> x;) f.push_back(x);
      ASSERT_EQ(f.size(), 11u) << line;
      EXPECT_EQ(f[0], fmt::format("imgs/{}", k));
      EXPECT_EQ(f[1], fmt::format("sample_{}.png", j));
      EXPECT_EQ(f[2], std::to_string(j));
      const int64_t index = k * 10 + j;
      EXPECT_EQ(f[3], std::to_string(pathfinder_label(11, index)));
      EXPECT_EQ(f[4], "1.0");
      EXPECT_EQ(f[5], "9");
      EXPECT_EQ(f[6], "3");
      std::string png = fmt::format("{}/imgs/{}/sample_{}.png", da, k, j);
      EXPECT_EQ(slurp(png), slurp(fmt::format("{}/imgs/{}/sample_{}.png", db, k, j)));
      EXPECT_EQ(read_png_gray8(png).pixels, generate_pathfinder_image(p, 11, index).pixels);
      ++j;
    }
    EXPECT_EQ(j, k < 2 ? 10 : 3);
  }
  // The loader reads the generated set back: 23 images, none empty.
  PathfinderLoadOptions options;
  options.data_dir = base + "/a";
  options.difficulty = "curv_contour_length_9";
  options.cache = false;
  PathfinderSet set = read_pathfinder_set(options);
  EXPECT_EQ(set.size(), 23);
  EXPECT_EQ(set.empty, 0);
  fs::remove_all(base);
}

TEST(PathfinderGenerator, LabelsAreExactlyBalancedAndNotAlternating) {
  int ones = 0, first_is_one = 0;
  for (int64_t i = 0; i < 20000; i += 2) {
    int a = pathfinder_label(3, i), b = pathfinder_label(3, i + 1);
    EXPECT_EQ(a + b, 1);
    ones += a + b;
    first_is_one += a;
  }
  EXPECT_EQ(ones, 10000);
  EXPECT_NEAR(first_is_one / 10000.0, 0.5, 0.02);  // a fair coin per pair (sd 0.005)
}

struct Stats {
  double ink = 0, lit = 0, bright = 0, distance = 0;
};

Stats pixel_stats(const PathfinderImage& im) {
  Stats s;
  for (uint8_t v : im.pixels) {
    s.ink += v;
    s.lit += v > 0;
    s.bright += v > 128;
  }
  s.distance = std::hypot(im.markers[0][0] - im.markers[1][0], im.markers[0][1] - im.markers[1][1]);
  return s;
}

// Flood fill over pixels brighter than `threshold`, stepping to any pixel within
// `reach` (Chebyshev distance; 1 = the 8 neighbours), from one marker centre to the other.
bool markers_connected(const PathfinderImage& im, int side, int threshold, int reach) {
  auto at = [&](int m) {
    int x = std::clamp(static_cast<int>(im.markers[m][0]), 0, side - 1);
    int y = std::clamp(static_cast<int>(im.markers[m][1]), 0, side - 1);
    return y * side + x;
  };
  std::vector<uint8_t> seen(im.pixels.size(), 0);
  std::vector<int> stack{at(0)};
  const int goal = at(1);
  seen[static_cast<std::size_t>(at(0))] = 1;
  while (!stack.empty()) {
    int p = stack.back();
    stack.pop_back();
    if (p == goal) return true;
    int x = p % side, y = p / side;
    for (int dy = -reach; dy <= reach; ++dy)
      for (int dx = -reach; dx <= reach; ++dx) {
        int nx = x + dx, ny = y + dy;
        if (nx < 0 || ny < 0 || nx >= side || ny >= side) continue;
        auto q = static_cast<std::size_t>(ny * side + nx);
        if (seen[q] || im.pixels[q] <= threshold) continue;
        seen[q] = 1;
        stack.push_back(static_cast<int>(q));
      }
  }
  return false;
}

TEST(PathfinderGenerator, ImageStatisticsMatchTheOfficialSet) {
  for (int contour : {6, 9, 14}) {
    PathfinderParams p = pathfinder_params(32, contour);
    const int n = 600;
    double zero_fraction = 0, distractors = 0, restarts = 0;
    for (int i = 0; i < n; ++i) {
      auto im = generate_pathfinder_image(p, 1, i);
      ASSERT_EQ(im.pixels.size(), 1024u);
      EXPECT_EQ(*std::max_element(im.pixels.begin(), im.pixels.end()), 255) << i;
      Stats s = pixel_stats(im);
      EXPECT_GT(s.lit, 60) << i;  // two snakes and two markers of ink
      zero_fraction += 1.0 - s.lit / 1024.0;
      distractors += im.distractors;
      restarts += im.restarts;
      for (auto& m : im.markers) {
        EXPECT_GE(m[0], 0);
        EXPECT_LT(m[0], 32);
        EXPECT_GE(m[1], 0);
        EXPECT_LT(m[1], 32);
      }
    }
    zero_fraction /= n;
    std::printf("contour %d: zero pixels %.3f, distractors placed %.2f, restarts %.2f per image\n",
                contour, zero_fraction, distractors / n, restarts / n);
    // The LRA set has about 66% zero pixels.
    EXPECT_GT(zero_fraction, 0.55);
    EXPECT_LT(zero_fraction, 0.85);
    EXPECT_GT(distractors / n, 0.5);
  }
}

// Logistic regression by Newton's method (float64) on standardised features.
std::vector<double> fit_logistic(const std::vector<std::vector<double>>& x,
                                 const std::vector<int>& y) {
  const std::size_t d = x[0].size() + 1;
  std::vector<double> w(d, 0.0);
  for (int iter = 0; iter < 25; ++iter) {
    std::vector<double> g(d, 0.0), h(d * d, 0.0);
    for (std::size_t i = 0; i < x.size(); ++i) {
      std::vector<double> xi(x[i]);
      xi.push_back(1.0);
      double z = 0;
      for (std::size_t a = 0; a < d; ++a) z += w[a] * xi[a];
      double p = 1.0 / (1.0 + std::exp(-z));
      for (std::size_t a = 0; a < d; ++a) {
        g[a] += (p - y[i]) * xi[a];
        for (std::size_t b = 0; b < d; ++b) h[a * d + b] += p * (1 - p) * xi[a] * xi[b];
      }
    }
    for (std::size_t a = 0; a < d; ++a) h[a * d + a] += 1e-6 * static_cast<double>(x.size());
    // Solve h * step = g (Gaussian elimination with partial pivoting).
    std::vector<double> step(g);
    for (std::size_t c = 0; c < d; ++c) {
      std::size_t piv = c;
      for (std::size_t r = c + 1; r < d; ++r)
        if (std::abs(h[r * d + c]) > std::abs(h[piv * d + c])) piv = r;
      for (std::size_t k = 0; k < d; ++k) std::swap(h[c * d + k], h[piv * d + k]);
      std::swap(step[c], step[piv]);
      for (std::size_t r = c + 1; r < d; ++r) {
        double f = h[r * d + c] / h[c * d + c];
        for (std::size_t k = c; k < d; ++k) h[r * d + k] -= f * h[c * d + k];
        step[r] -= f * step[c];
      }
    }
    for (std::size_t c = d; c-- > 0;) {
      for (std::size_t k = c + 1; k < d; ++k) step[c] -= h[c * d + k] * step[k];
      step[c] /= h[c * d + c];
    }
    for (std::size_t a = 0; a < d; ++a) w[a] -= step[a];
  }
  return w;
}

TEST(PathfinderGenerator, PixelStatisticsDoNotPredictTheLabel) {
  // 2000 training and 2000 held-out images: a chance-level classifier scores 0.5 with
  // standard deviation 0.011, so the 0.045 bound is four standard deviations.
  PathfinderParams p = pathfinder_params(32, 14);
  const int n = 4000;
  std::vector<std::vector<double>> features(n);
  std::vector<int> labels(n);
  std::vector<uint8_t> connected(n);
  lra::core::parallel_for(n, 50, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      auto im = generate_pathfinder_image(p, 2024, i);
      Stats s = pixel_stats(im);
      features[static_cast<std::size_t>(i)] = {s.ink, s.lit, s.bright, s.distance};
      labels[static_cast<std::size_t>(i)] = im.label;
      connected[static_cast<std::size_t>(i)] = markers_connected(im, 32, 16, 1);
    }
  });
  const int n_train = n / 2;
  const std::size_t f_count = features[0].size();
  std::vector<double> mean(f_count, 0), sd(f_count, 0);
  for (int i = 0; i < n_train; ++i)
    for (std::size_t f = 0; f < f_count; ++f)
      mean[f] += features[static_cast<std::size_t>(i)][f] / n_train;
  for (int i = 0; i < n_train; ++i)
    for (std::size_t f = 0; f < f_count; ++f)
      sd[f] += std::pow(features[static_cast<std::size_t>(i)][f] - mean[f], 2) / n_train;
  for (auto& v : sd) v = std::sqrt(v) + 1e-12;
  for (auto& row : features)
    for (std::size_t f = 0; f < f_count; ++f) row[f] = (row[f] - mean[f]) / sd[f];

  std::vector<std::vector<double>> train_x(features.begin(), features.begin() + n_train);
  std::vector<int> train_y(labels.begin(), labels.begin() + n_train);
  auto w = fit_logistic(train_x, train_y);
  int correct = 0;
  for (int i = n_train; i < n; ++i) {
    double z = w.back();
    for (std::size_t f = 0; f < f_count; ++f) z += w[f] * features[static_cast<std::size_t>(i)][f];
    correct += (z > 0) == (labels[static_cast<std::size_t>(i)] == 1);
  }
  double logistic_acc = static_cast<double>(correct) / (n - n_train);

  // Best single-feature threshold (either direction) chosen on train, scored held-out.
  const char* names[] = {"ink", "lit", "bright", "marker distance"};
  for (std::size_t f = 0; f < f_count; ++f) {
    double best_acc = 0, best_t = 0;
    int best_dir = 1;
    for (int c = 0; c < n_train; c += 4) {
      double t = features[static_cast<std::size_t>(c)][f];
      int agree = 0;
      for (int i = 0; i < n_train; ++i)
        agree += (features[static_cast<std::size_t>(i)][f] > t) ==
                 (labels[static_cast<std::size_t>(i)] == 1);
      double acc = static_cast<double>(agree) / n_train;
      if (std::max(acc, 1 - acc) > best_acc)
        best_acc = std::max(acc, 1 - acc), best_t = t, best_dir = acc >= 0.5 ? 1 : -1;
    }
    int agree = 0;
    for (int i = n_train; i < n; ++i) {
      bool above = features[static_cast<std::size_t>(i)][f] > best_t;
      agree += (best_dir == 1 ? above : !above) == (labels[static_cast<std::size_t>(i)] == 1);
    }
    double acc = static_cast<double>(agree) / (n - n_train);
    std::printf("threshold on %s: held-out accuracy %.3f\n", names[f], acc);
    EXPECT_NEAR(acc, 0.5, 0.045) << names[f];
  }
  std::printf("logistic regression on ink, lit, bright, marker distance: held-out accuracy %.3f\n",
              logistic_acc);
  EXPECT_NEAR(logistic_acc, 0.5, 0.045);

  // Solvable: the markers are joined by ink (pixels > 16; the Lanczos blur bridges the
  // 1-pixel gaps between paddles) far more often for label 1. Measured: 1.00 vs ~0.6.
  double c1 = 0, c0 = 0, n1 = 0, n0 = 0;
  for (int i = 0; i < n; ++i) {
    if (labels[static_cast<std::size_t>(i)] == 1)
      c1 += connected[static_cast<std::size_t>(i)], ++n1;
    else
      c0 += connected[static_cast<std::size_t>(i)], ++n0;
  }
  std::printf("markers joined by ink: label 1 %.3f, label 0 %.3f\n", c1 / n1, c0 / n0);
  EXPECT_GT(c1 / n1, 0.8);
  EXPECT_GT(c1 / n1 - c0 / n0, 0.3);
}

TEST(PathfinderGenerator, PathXImages) {
  PathfinderParams p = pathfinder_params(128, 14);
  int joined[2] = {0, 0}, count[2] = {0, 0};
  for (int i = 0; i < 16; ++i) {
    auto im = generate_pathfinder_image(p, 5, i);
    ASSERT_EQ(im.pixels.size(), 128u * 128u);
    EXPECT_EQ(*std::max_element(im.pixels.begin(), im.pixels.end()), 255);
    EXPECT_TRUE(im.margin == 2 || im.margin == 3);
    double lit = static_cast<double>(
        std::count_if(im.pixels.begin(), im.pixels.end(), [](uint8_t v) { return v > 0; }));
    EXPECT_GT(lit, 200);
    EXPECT_LT(lit / (128.0 * 128.0), 0.3);
    // Path-X gaps between paddles are 2-3 pixels: step over them (reach 2).
    joined[im.label] += markers_connected(im, 128, 16, 2);
    ++count[im.label];
  }
  EXPECT_EQ(count[0], 8);
  EXPECT_GE(joined[1], count[1] - 1);
  EXPECT_LE(joined[0], count[0] / 2);
  EXPECT_EQ(generate_pathfinder_image(p, 5, 3).pixels, generate_pathfinder_image(p, 5, 3).pixels);
}

TEST(PathfinderGenerator, RejectsUnsupportedSettings) {
  EXPECT_THROW(pathfinder_params(64, 14), lra::Error);
  EXPECT_THROW(pathfinder_params(32, 10), lra::Error);
  EXPECT_EQ(pathfinder_difficulty(6), "curv_baseline");
  EXPECT_EQ(pathfinder_difficulty(14), "curv_contour_length_14");
}

}  // namespace
