#include "tasks/pathfinder_generator.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "tasks/dataset.h"
#include "tasks/png_io.h"
#include "tasks/task_io.h"

namespace lra::tasks {

namespace {

constexpr double pi = 3.14159265358979323846;

uint64_t mix64(uint64_t h) {  // splitmix64 finaliser: decorrelates user seeds
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

constexpr uint64_t image_tag = 0x50415448494d47ull;  // "PATHIMG"
constexpr uint64_t label_tag = 0x504154484c42ull;    // "PATHLB"

// The random stream of one image: the counter-based generator at offset index << 32,
// so image i never shares numbers with image j and depends on nothing else.
class ImageRng {
 public:
  ImageRng(uint64_t seed, int64_t index)
      : rng_(mix64(seed ^ image_tag), static_cast<uint64_t>(index) << 32) {}
  double uniform() { return rng_.uniform_scalar(); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  int below(int n) { return std::min(n - 1, static_cast<int>(uniform() * n)); }

 private:
  core::Rng rng_;
};

struct Seg {
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};

Seg paddle_at(double x, double y, double theta, double length) {
  return {x, y, x + length * std::cos(theta), y + length * std::sin(theta)};
}

double point_segment_distance(double px, double py, const Seg& s) {
  double dx = s.x1 - s.x0, dy = s.y1 - s.y0;
  double len2 = dx * dx + dy * dy;
  double t = len2 > 0 ? ((px - s.x0) * dx + (py - s.y0) * dy) / len2 : 0.0;
  t = std::clamp(t, 0.0, 1.0);
  double ex = s.x0 + t * dx - px, ey = s.y0 + t * dy - py;
  return std::sqrt(ex * ex + ey * ey);
}

// The drawing at `scale` x resolution: ink (max-composited intensities) and the
// occupancy mask (ink dilated by the margin, plus a border). Changes can be logged
// and undone, so a distractor snake that fails half-way leaves no trace.
class Canvas {
 public:
  Canvas(int side, double half_thickness, double margin, int border)
      : side_(side),
        half_thickness_(half_thickness),
        dilation_(half_thickness + margin),
        border_(border) {
    reset();
  }

  void reset() {
    ink_.assign(static_cast<std::size_t>(side_) * side_, 0.0f);
    mask_.assign(static_cast<std::size_t>(side_) * side_, 0);
    for (int y = 0; y < side_; ++y)
      for (int x = 0; x < side_; ++x)
        if (x < border_ || y < border_ || x >= side_ - border_ || y >= side_ - border_)
          mask_[index(x, y)] = 1;
    logging_ = false;
    ink_log_.clear();
    mask_log_.clear();
  }

  int side() const { return side_; }
  const std::vector<float>& ink() const { return ink_; }
  const std::vector<uint8_t>& mask() const { return mask_; }

  // A point is blocked outside the canvas, on the mask, or near a paddle not yet
  // committed to the mask (the newest paddle of another growing snake).
  bool blocked(double x, double y, const std::vector<Seg>& pending) const {
    if (!(x >= 0 && y >= 0 && x < side_ && y < side_)) return true;
    if (mask_[index(static_cast<int>(x), static_cast<int>(y))]) return true;
    for (const Seg& p : pending)
      if (point_segment_distance(x, y, p) <= dilation_) return true;
    return false;
  }

  // Every pixel within `clearance` of the paddle's ink lies inside the canvas and is
  // not blocked.
  bool footprint_free(const Seg& s, const std::vector<Seg>& pending, double clearance) const {
    double reach = half_thickness_ + 0.5 + clearance;
    int x0 = static_cast<int>(std::floor(std::min(s.x0, s.x1) - reach));
    int x1 = static_cast<int>(std::ceil(std::max(s.x0, s.x1) + reach));
    int y0 = static_cast<int>(std::floor(std::min(s.y0, s.y1) - reach));
    int y1 = static_cast<int>(std::ceil(std::max(s.y0, s.y1) + reach));
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) {
        double cx = x + 0.5, cy = y + 0.5;
        if (point_segment_distance(cx, cy, s) >= reach) continue;
        if (x < 0 || y < 0 || x >= side_ || y >= side_) return false;
        if (blocked(cx, cy, pending)) return false;
      }
    return true;
  }

  // Soft line: coverage falls linearly from the centre line over half a pixel.
  void draw(const Seg& s, float contrast) {
    double reach = half_thickness_ + 0.5;
    for_box(s, reach, [&](int x, int y) {
      double cover = std::clamp(reach - point_segment_distance(x + 0.5, y + 0.5, s), 0.0, 1.0);
      set_ink(x, y, contrast * static_cast<float>(cover));
    });
  }

  // Commits a paddle to the mask: its ink dilated by the margin.
  void occupy(const Seg& s) {
    for_box(s, dilation_, [&](int x, int y) {
      if (point_segment_distance(x + 0.5, y + 0.5, s) <= dilation_) set_mask(x, y);
    });
  }

  void disc(double cx, double cy, double radius, float value) {
    Seg point{cx, cy, cx, cy};
    for_box(point, radius + 0.5, [&](int x, int y) {
      double d = std::hypot(x + 0.5 - cx, y + 0.5 - cy);
      set_ink(x, y, value * static_cast<float>(std::clamp(radius + 0.5 - d, 0.0, 1.0)));
    });
  }

  void begin_log() {
    logging_ = true;
    ink_log_.clear();
    mask_log_.clear();
  }
  void commit_log() { logging_ = false; }
  void undo_log() {
    for (auto it = ink_log_.rbegin(); it != ink_log_.rend(); ++it) ink_[it->first] = it->second;
    for (auto it = mask_log_.rbegin(); it != mask_log_.rend(); ++it) mask_[it->first] = it->second;
    logging_ = false;
  }

 private:
  std::size_t index(int x, int y) const { return static_cast<std::size_t>(y) * side_ + x; }

  template <typename F>
  void for_box(const Seg& s, double reach, const F& f) {
    int x0 = std::max(0, static_cast<int>(std::floor(std::min(s.x0, s.x1) - reach)));
    int x1 = std::min(side_ - 1, static_cast<int>(std::ceil(std::max(s.x0, s.x1) + reach)));
    int y0 = std::max(0, static_cast<int>(std::floor(std::min(s.y0, s.y1) - reach)));
    int y1 = std::min(side_ - 1, static_cast<int>(std::ceil(std::max(s.y0, s.y1) + reach)));
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) f(x, y);
  }

  void set_ink(int x, int y, float value) {
    std::size_t i = index(x, y);
    if (value <= ink_[i]) return;
    if (logging_) ink_log_.emplace_back(i, ink_[i]);
    ink_[i] = value;
  }
  void set_mask(int x, int y) {
    std::size_t i = index(x, y);
    if (mask_[i]) return;
    if (logging_) mask_log_.emplace_back(i, mask_[i]);
    mask_[i] = 1;
  }

  int side_;
  double half_thickness_, dilation_;
  int border_;
  std::vector<float> ink_;
  std::vector<uint8_t> mask_;
  bool logging_ = false;
  std::vector<std::pair<std::size_t, float>> ink_log_;
  std::vector<std::pair<std::size_t, uint8_t>> mask_log_;
};

// Geometry of one image in canvas pixels.
struct Geometry {
  double length, margin, seed_distance, marker_radius, continuity;
  int candidates, paddle_tries;
  double clearance;
};

struct Snake {
  Seg last;          // newest paddle (not yet in the mask)
  double theta = 0;  // its direction
  double start_x = 0, start_y = 0;
};

// Adds one paddle continuing `snake`: candidate directions psi around the previous one,
// weighted by max(cos(min(c |psi - theta|, pi/2)), 0)^2 x (1 - occupancy), where the
// occupancy is the blocked fraction of five points along the candidate. The drawn
// paddle must have a free footprint; up to `paddle_tries` draws.
bool extend_snake(Canvas& canvas, ImageRng& rng, Snake& snake, const std::vector<Seg>& pending,
                  const Geometry& g, double clearance, float contrast,
                  std::vector<double>& weights) {
  const int k_count = g.candidates;
  weights.assign(static_cast<std::size_t>(k_count), 0.0);
  for (int attempt = 0; attempt < g.paddle_tries; ++attempt) {
    double phase = rng.uniform();
    double total = 0;
    for (int k = 0; k < k_count; ++k) {
      double delta = -pi + 2 * pi * (k + phase) / k_count;
      double cont = std::cos(std::min(g.continuity * std::abs(delta), pi / 2));
      double w = cont > 0 ? cont * cont : 0.0;
      if (w > 1e-12) {
        double psi = snake.theta + delta;
        double c = std::cos(psi), s = std::sin(psi);
        double sx = snake.last.x1 + g.margin * c, sy = snake.last.y1 + g.margin * s;
        int occupied = 0;
        for (int p = 0; p <= 4; ++p) {
          double t = g.length * p / 4.0;
          occupied += canvas.blocked(sx + t * c, sy + t * s, pending) ? 1 : 0;
        }
        w *= 1.0 - occupied / 5.0;
      } else {
        w = 0;
      }
      weights[static_cast<std::size_t>(k)] = w;
      total += w;
    }
    double u = rng.uniform() * total;
    if (!(total > 0)) continue;
    int chosen = k_count - 1;
    for (int k = 0; k < k_count; ++k) {
      u -= weights[static_cast<std::size_t>(k)];
      if (u < 0) {
        chosen = k;
        break;
      }
    }
    while (weights[static_cast<std::size_t>(chosen)] <= 0) --chosen;  // rounding at the top end
    double psi = snake.theta - pi + 2 * pi * (chosen + phase) / k_count;
    Seg next = paddle_at(snake.last.x1 + g.margin * std::cos(psi),
                         snake.last.y1 + g.margin * std::sin(psi), psi, g.length);
    if (!canvas.footprint_free(next, pending, clearance)) continue;
    canvas.occupy(snake.last);
    canvas.draw(next, contrast);
    snake.last = next;
    snake.theta = psi;
    return true;
  }
  return false;
}

// Separable Lanczos-3 resampling from `from` to `to` samples (to < from), kernel
// stretched by the ratio as PIL does when downsampling; taps renormalised at borders.
struct Resampler {
  int from = 0, to = 0;
  std::vector<int> first;  // first input tap of each output sample
  std::vector<std::vector<double>> weights;

  Resampler(int from_size, int to_size) : from(from_size), to(to_size) {
    double ratio = static_cast<double>(from) / to;
    double support = 3.0 * ratio;
    auto sinc = [](double x) { return x == 0 ? 1.0 : std::sin(pi * x) / (pi * x); };
    for (int i = 0; i < to; ++i) {
      double centre = (i + 0.5) * ratio;
      int lo = std::max(0, static_cast<int>(std::floor(centre - support)));
      int hi = std::min(from - 1, static_cast<int>(std::ceil(centre + support)));
      std::vector<double> w;
      double sum = 0;
      for (int j = lo; j <= hi; ++j) {
        double x = (j + 0.5 - centre) / ratio;
        double v = std::abs(x) < 3.0 ? sinc(x) * sinc(x / 3.0) : 0.0;
        w.push_back(v);
        sum += v;
      }
      for (double& v : w) v /= sum;
      first.push_back(lo);
      weights.push_back(std::move(w));
    }
  }
};

const Resampler& resampler_for(int from, int to) {
  // Two fixed sizes in practice; built on first use per thread (no locking needed).
  thread_local std::map<std::pair<int, int>, Resampler> cache;
  auto it = cache.find({from, to});
  if (it == cache.end()) it = cache.emplace(std::make_pair(from, to), Resampler(from, to)).first;
  return it->second;
}

std::vector<uint8_t> downsample_and_rescale(const Canvas& canvas, int resolution) {
  const int side = canvas.side();
  const Resampler& r = resampler_for(side, resolution);
  const std::vector<float>& ink = canvas.ink();
  std::vector<double> rows(static_cast<std::size_t>(side) * resolution);  // [side][resolution]
  for (int y = 0; y < side; ++y)
    for (int i = 0; i < resolution; ++i) {
      const auto& w = r.weights[static_cast<std::size_t>(i)];
      const float* src =
          ink.data() + static_cast<std::size_t>(y) * side + r.first[static_cast<std::size_t>(i)];
      double acc = 0;
      for (std::size_t t = 0; t < w.size(); ++t) acc += w[t] * src[t];
      rows[static_cast<std::size_t>(y) * resolution + i] = acc;
    }
  std::vector<double> out(static_cast<std::size_t>(resolution) * resolution);
  for (int i = 0; i < resolution; ++i) {
    const auto& w = r.weights[static_cast<std::size_t>(i)];
    int lo = r.first[static_cast<std::size_t>(i)];
    for (int x = 0; x < resolution; ++x) {
      double acc = 0;
      for (std::size_t t = 0; t < w.size(); ++t)
        acc += w[t] * rows[(static_cast<std::size_t>(lo) + t) * resolution + x];
      out[static_cast<std::size_t>(i) * resolution + x] = std::max(acc, 0.0);  // clip the ringing
    }
  }
  // Per-image min/max rescale to 0..255 (LRA's preparation); no noise.
  double lo = *std::min_element(out.begin(), out.end());
  double hi = *std::max_element(out.begin(), out.end());
  std::vector<uint8_t> pixels(out.size(), 0);
  if (hi > lo)
    for (std::size_t p = 0; p < out.size(); ++p)
      pixels[p] = static_cast<uint8_t>(std::lround((out[p] - lo) / (hi - lo) * 255.0));
  return pixels;
}

}  // namespace

PathfinderParams pathfinder_params(int resolution, int contour_length) {
  LRA_CHECK(resolution == 32 || resolution == 128,
            "pathfinder: resolution must be 32 or 128, got {}", resolution);
  LRA_CHECK(contour_length == 6 || contour_length == 9 || contour_length == 14,
            "pathfinder: contour length must be 6, 9 or 14, got {}", contour_length);
  PathfinderParams p;
  p.resolution = resolution;
  p.contour_length = contour_length;
  if (resolution == 32) {
    p.distractor_length = contour_length / 3;
    p.distractor_slots = 20 / p.distractor_length;
    p.paddle_length = 2.0;
    p.thickness = 0.5;
    p.margins = {1};
    p.continuity = 1.0;
    p.seed_distance = 7.0;
    p.marker_radius = 1.5;
    p.target_contrast = 1.5;
    p.distractor_contrast = 2.0;
  } else {  // Path-X
    p.distractor_length = 4;
    p.distractor_slots = 8;
    p.paddle_length = 2.0;
    p.thickness = 1.5;
    p.margins = {2, 3};
    p.continuity = 1.8;
    p.seed_distance = 20.0;
    p.marker_radius = 3.0;
    p.target_contrast = 0.9;
    p.distractor_contrast = 0.9;
  }
  return p;
}

std::string pathfinder_difficulty(int contour_length) {
  if (contour_length == 6) return "curv_baseline";
  return fmt::format("curv_contour_length_{}", contour_length);
}

int pathfinder_label(uint64_t seed, int64_t index) {
  core::Rng rng(mix64(seed ^ label_tag), static_cast<uint64_t>(index / 2));
  int first = rng.uniform_scalar() < 0.5 ? 1 : 0;
  return (index % 2 == 0) ? first : 1 - first;
}

PathfinderImage generate_pathfinder_image(const PathfinderParams& params, uint64_t seed,
                                          int64_t index) {
  LRA_CHECK(index >= 0, "pathfinder: image index must be >= 0, got {}", index);
  ImageRng rng(seed, index);
  PathfinderImage result;
  result.label = pathfinder_label(seed, index);
  result.margin =
      params.margins[static_cast<std::size_t>(rng.below(static_cast<int>(params.margins.size())))];

  const double s = params.scale;
  const int side = params.resolution * params.scale;
  Geometry g{params.paddle_length * s, result.margin * s,
             params.seed_distance * s, params.marker_radius * s,
             params.continuity,        params.candidates,
             params.paddle_tries,      0.0};
  const double target_clearance = params.target_clearance * g.margin;
  const double distractor_clearance = params.distractor_clearance * g.margin;
  Canvas canvas(side, params.thickness * s / 2, g.margin, params.scale);
  const auto target_contrast = static_cast<float>(params.target_contrast);
  const auto distractor_contrast = static_cast<float>(params.distractor_contrast);
  std::vector<double> weights;

  // Target snakes: a failed paddle restarts the whole image.
  Snake targets[2];
  for (;; ++result.restarts) {
    LRA_CHECK(result.restarts < 10000, "pathfinder: image {} could not place its target snakes",
              index);
    canvas.reset();
    bool ok = false;
    for (int t = 0; t < g.paddle_tries && !ok; ++t) {
      double lo = 2 * g.seed_distance, hi = side - 2 * g.seed_distance;
      double x = rng.uniform(lo, hi), y = rng.uniform(lo, hi), theta = rng.uniform(0, 2 * pi);
      Seg first = paddle_at(x, y, theta, g.length);
      if (!canvas.footprint_free(first, {}, target_clearance)) continue;
      targets[0] = {first, theta, x, y};
      ok = true;
    }
    if (!ok) continue;
    ok = false;
    for (int t = 0; t < g.paddle_tries && !ok; ++t) {
      double phi = rng.uniform(0, 2 * pi), theta = rng.uniform(0, 2 * pi);
      double x = targets[0].start_x + g.seed_distance * std::cos(phi);
      double y = targets[0].start_y + g.seed_distance * std::sin(phi);
      Seg second = paddle_at(x, y, theta, g.length);
      if (!canvas.footprint_free(second, {targets[0].last}, target_clearance)) continue;
      targets[1] = {second, theta, x, y};
      ok = true;
    }
    if (!ok) continue;
    canvas.draw(targets[0].last, target_contrast);
    canvas.draw(targets[1].last, target_contrast);
    // The two snakes grow alternately, each seeing the other's newest paddle.
    for (int step = 1; step < params.contour_length && ok; ++step)
      for (int k = 0; k < 2 && ok; ++k)
        ok = extend_snake(canvas, rng, targets[k], {targets[1 - k].last}, g, target_clearance,
                          target_contrast, weights);
    if (!ok) continue;
    canvas.occupy(targets[0].last);
    canvas.occupy(targets[1].last);
    break;
  }

  // Distractor snakes: each slot tried a few times from a random free pixel, skipped
  // when it does not fit.
  std::vector<std::size_t> free_pixels;
  for (int slot = 0; slot < params.distractor_slots; ++slot) {
    free_pixels.clear();
    for (std::size_t p = 0; p < canvas.mask().size(); ++p)
      if (!canvas.mask()[p]) free_pixels.push_back(p);
    for (int attempt = 0; attempt < params.distractor_tries && !free_pixels.empty(); ++attempt) {
      std::size_t p =
          free_pixels[static_cast<std::size_t>(rng.below(static_cast<int>(free_pixels.size())))];
      double x = static_cast<double>(p % static_cast<std::size_t>(side)) + rng.uniform();
      double y = static_cast<double>(p / static_cast<std::size_t>(side)) + rng.uniform();
      double theta = rng.uniform(0, 2 * pi);
      Seg first = paddle_at(x, y, theta, g.length);
      if (!canvas.footprint_free(first, {}, distractor_clearance)) continue;
      canvas.begin_log();
      Snake d{first, theta, x, y};
      canvas.draw(first, distractor_contrast);
      bool ok = true;
      for (int step = 1; step < params.distractor_length && ok; ++step)
        ok =
            extend_snake(canvas, rng, d, {}, g, distractor_clearance, distractor_contrast, weights);
      if (!ok) {
        canvas.undo_log();
        continue;
      }
      canvas.occupy(d.last);
      canvas.commit_log();
      ++result.distractors;
      break;
    }
  }

  // Markers: the start of target o, and the end of target o (label 1) or 1-o (label 0).
  int o = rng.below(2);
  int other = result.label == 1 ? o : 1 - o;
  double mx[2] = {targets[o].start_x, targets[other].last.x1};
  double my[2] = {targets[o].start_y, targets[other].last.y1};
  float marker_value = std::max(target_contrast, distractor_contrast);
  for (int m = 0; m < 2; ++m) {
    canvas.disc(mx[m], my[m], g.marker_radius, marker_value);
    result.markers[m][0] = mx[m] / s;
    result.markers[m][1] = my[m] / s;
  }
  result.pixels = downsample_and_rescale(canvas, params.resolution);
  return result;
}

namespace {

// parallel_for whose body may throw: the first error (in chunk order) is rethrown.
template <typename Body>
void parallel_for_checked(int64_t n, int64_t grain, const Body& body) {
  int64_t chunks = (n + grain - 1) / grain;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(std::max<int64_t>(chunks, 0)));
  core::parallel_for(n, grain, [&](int64_t begin, int64_t end) {
    try {
      body(begin, end);
    } catch (...) {
      errors[static_cast<std::size_t>(begin / grain)] = std::current_exception();
    }
  });
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace

void write_pathfinder_set(const std::string& out_dir, uint64_t seed, const PathfinderParams& params,
                          int64_t count, int64_t batch_size,
                          const std::function<void(int64_t, int64_t)>& progress) {
  LRA_CHECK(count >= 1, "pathfinder generator: --count must be >= 1, got {}", count);
  LRA_CHECK(batch_size >= 1, "pathfinder generator: --batch-size must be >= 1, got {}", batch_size);
  namespace fs = std::filesystem;
  const std::string root = out_dir + "/" + pathfinder_difficulty(params.contour_length);
  std::error_code ec;
  fs::create_directories(root + "/metadata", ec);
  LRA_CHECK(!ec, "{}/metadata: cannot create folder ({})", root, ec.message());
  const int64_t batches = (count + batch_size - 1) / batch_size;
  for (int64_t k = 0; k < batches; ++k) {
    const int64_t begin = k * batch_size, n = std::min(batch_size, count - begin);
    const std::string sub = fmt::format("imgs/{}", k);
    fs::create_directories(root + "/" + sub, ec);
    LRA_CHECK(!ec, "{}/{}: cannot create folder ({})", root, sub, ec.message());
    std::vector<std::string> lines(static_cast<std::size_t>(n));
    parallel_for_checked(n, 8, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        PathfinderImage image = generate_pathfinder_image(params, seed, begin + j);
        std::string name = fmt::format("sample_{}.png", j);
        write_png_gray8(root + "/" + sub + "/" + name, params.resolution, params.resolution,
                        image.pixels.data());
        // The 11 official fields: subfolder, file, index, label, continuity, contour
        // length, distractor length, paddle length, thickness, margin, contrasts.
        lines[static_cast<std::size_t>(j)] =
            fmt::format("{} {} {} {} {:.1f} {} {} {} {:.1f} {} 1\n", sub, name, j, image.label,
                        params.continuity, params.contour_length, params.distractor_length,
                        static_cast<int>(params.paddle_length), params.thickness, image.margin);
      }
    });
    std::string text;
    for (const auto& line : lines) text += line;
    write_file_atomic(fmt::format("{}/metadata/{}.npy", root, k), text);
    if (progress) progress(begin + n, count);
  }
}

namespace {

int64_t option_int(const std::map<std::string, std::string>& options, const std::string& key,
                   int64_t fallback) {
  auto it = options.find(key);
  if (it == options.end()) return fallback;
  int64_t value = 0;
  LRA_CHECK(parse_int64(it->second, value),
            "pathfinder generator: --{} expects an integer, got '{}'", key, it->second);
  return value;
}

void run_generator(const std::string& out_dir, uint64_t seed,
                   const std::map<std::string, std::string>& options) {
  int64_t count = option_int(options, "count", 200000);
  int64_t resolution = option_int(options, "resolution", 32);
  int64_t contour = option_int(options, "contour-length", 14);
  int64_t batch = option_int(options, "batch-size", 1000);
  LRA_CHECK(resolution == 32 || resolution == 128,
            "pathfinder generator: --resolution must be 32 or 128, got {}", resolution);
  LRA_CHECK(contour == 6 || contour == 9 || contour == 14,
            "pathfinder generator: --contour-length must be 6, 9 or 14, got {}", contour);
  PathfinderParams params =
      pathfinder_params(static_cast<int>(resolution), static_cast<int>(contour));
  auto start = std::chrono::steady_clock::now();
  double last_report = -1;
  auto progress = [&](int64_t done, int64_t total) {
    double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (done < total && elapsed - last_report < 2.0) return;
    last_report = elapsed;
    double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
    double eta = rate > 0 ? static_cast<double>(total - done) / rate : 0.0;
    std::fprintf(stderr, "pathfinder: %lld/%lld images (%.0f/s, ETA %.0f s)\n",
                 static_cast<long long>(done), static_cast<long long>(total), rate, eta);
  };
  write_pathfinder_set(out_dir, seed, params, count, batch, progress);
  std::printf("wrote %lld images to %s/%s (resolution %lld, contour length %lld, seed %llu)\n",
              static_cast<long long>(count), out_dir.c_str(),
              pathfinder_difficulty(static_cast<int>(contour)).c_str(),
              static_cast<long long>(resolution), static_cast<long long>(contour),
              static_cast<unsigned long long>(seed));
}

}  // namespace

LRA_REGISTER_GENERATOR(GeneratorInfo{
    "pathfinder",
    "  --count N            images (default 200000; labels exactly balanced for even N)\n"
    "  --resolution 32|128  32 = LRA Pathfinder, 128 = Path-X (default 32)\n"
    "  --contour-length L   6 (curv_baseline), 9, 14 (default 14)\n"
    "  --batch-size B       images per imgs/<k> folder and metadata/<k>.npy (default 1000)\n",
    {"count", "resolution", "contour-length", "batch-size"},
    run_generator});

}  // namespace lra::tasks
