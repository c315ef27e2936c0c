// Pathfinder / Path-X: PNG I/O against libpng's independent simplified API, the loader
// on fixtures written here in the official layout (good and bad), split reproducibility,
// the cache, and the generator's statistics (determinism, balance, pixel statistics that
// must not predict the label, and markers connected by ink mostly for label 1).
#include "tasks/pathfinder.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <png.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "core/error.h"
#include "core/parallel.h"
#include "tasks/dataset.h"
#include "tasks/pathfinder_generator.h"
#include "tasks/png_io.h"

namespace {

namespace fs = std::filesystem;
using namespace lra::tasks;

std::string temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / fmt::format("lra_pf_{}_{}", name, ::getpid());
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

// Reference PNG writer: libpng's simplified API, independent of tasks/png_io.
void reference_write(const std::string& path, int w, int h, png_uint_32 format, const void* data,
                     const void* colormap = nullptr, int colormap_entries = 0) {
  fs::create_directories(fs::path(path).parent_path());
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(w);
  image.height = static_cast<png_uint_32>(h);
  image.format = format;
  image.colormap_entries = static_cast<png_uint_32>(colormap_entries);
  ASSERT_TRUE(png_image_write_to_file(&image, path.c_str(), 0, data, 0, colormap)) << image.message;
}

std::vector<uint8_t> reference_read_gray(const std::string& path, int& w, int& h) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  EXPECT_TRUE(png_image_begin_read_from_file(&image, path.c_str())) << image.message;
  image.format = PNG_FORMAT_GRAY;
  std::vector<uint8_t> out(PNG_IMAGE_SIZE(image));
  EXPECT_TRUE(png_image_finish_read(&image, nullptr, out.data(), 0, nullptr)) << image.message;
  w = static_cast<int>(image.width);
  h = static_cast<int>(image.height);
  return out;
}

std::vector<uint8_t> random_pixels(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = static_cast<uint8_t>(gen() & 0xff);
  return v;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const lra::Error& e) {
    return e.what();
  }
  return "(no error)";
}

// ---------------------------------------------------------------- PNG I/O

TEST(PngIo, RoundTripAgainstReferenceDecoderAndEncoder) {
  std::string dir = temp_dir("png");
  const int w = 37, h = 23;
  auto pixels = random_pixels(w * h, 1);
  write_png_gray8(dir + "/ours.png", w, h, pixels.data());
  int rw = 0, rh = 0;
  EXPECT_EQ(reference_read_gray(dir + "/ours.png", rw, rh), pixels);
  EXPECT_EQ(rw, w);
  EXPECT_EQ(rh, h);
  reference_write(dir + "/ref.png", w, h, PNG_FORMAT_GRAY, pixels.data());
  GrayImage back = read_png_gray8(dir + "/ref.png");
  EXPECT_EQ(back.width, w);
  EXPECT_EQ(back.height, h);
  EXPECT_EQ(back.pixels, pixels);
  fs::remove_all(dir);
}

TEST(PngIo, ConvertsSixteenBitRgbPaletteAndAlphaToGrey) {
  std::string dir = temp_dir("png_layouts");
  const int w = 5, h = 3;
  auto grey = random_pixels(w * h, 2);
  // 16-bit linear grey: v * 257 scales back to v exactly.
  std::vector<uint16_t> wide(grey.size());
  for (std::size_t i = 0; i < grey.size(); ++i) wide[i] = static_cast<uint16_t>(grey[i] * 257);
  reference_write(dir + "/g16.png", w, h, PNG_FORMAT_LINEAR_Y, wide.data());
  EXPECT_EQ(read_png_gray8(dir + "/g16.png").pixels, grey);
  // RGB with R = G = B is the grey value exactly; a pure colour follows the 601 weights.
  std::vector<uint8_t> rgb(grey.size() * 3);
  for (std::size_t i = 0; i < rgb.size(); ++i) rgb[i] = grey[i / 3];
  rgb[0] = 200, rgb[1] = 0, rgb[2] = 0;
  reference_write(dir + "/rgb.png", w, h, PNG_FORMAT_RGB, rgb.data());
  GrayImage from_rgb = read_png_gray8(dir + "/rgb.png");
  EXPECT_NEAR(from_rgb.pixels[0], 0.2989 * 200, 1.0);
  for (int i = 1; i < w * h; ++i)
    EXPECT_EQ(from_rgb.pixels[static_cast<std::size_t>(i)], grey[static_cast<std::size_t>(i)]);
  // Palette of grey entries.
  std::vector<uint8_t> colormap(12);
  for (std::size_t i = 0; i < colormap.size(); ++i)
    colormap[i] = static_cast<uint8_t>((i / 3) * 60);
  std::vector<uint8_t> indices(w * h);
  for (int i = 0; i < w * h; ++i)
    indices[static_cast<std::size_t>(i)] = static_cast<uint8_t>(i % 4);
  reference_write(dir + "/pal.png", w, h, PNG_FORMAT_RGB_COLORMAP, indices.data(), colormap.data(),
                  4);
  GrayImage from_palette = read_png_gray8(dir + "/pal.png");
  for (int i = 0; i < w * h; ++i)
    EXPECT_EQ(from_palette.pixels[static_cast<std::size_t>(i)], (i % 4) * 60);
  // Grey + alpha: the alpha channel is dropped.
  std::vector<uint8_t> ga(grey.size() * 2, 255);
  for (std::size_t i = 0; i < grey.size(); ++i) ga[2 * i] = grey[i];
  reference_write(dir + "/ga.png", w, h, PNG_FORMAT_GA, ga.data());
  EXPECT_EQ(read_png_gray8(dir + "/ga.png").pixels, grey);
  fs::remove_all(dir);
}

TEST(PngIo, EveryFailureNamesTheFile) {
  std::string dir = temp_dir("png_bad");
  auto pixels = random_pixels(32 * 32, 3);
  write_png_gray8(dir + "/good.png", 32, 32, pixels.data());
  std::string good = slurp(dir + "/good.png");
  spit(dir + "/truncated.png", good.substr(0, good.size() / 2));
  std::string garbage = good.substr(0, 8) + std::string(200, 'x');
  spit(dir + "/garbage.png", garbage);
  spit(dir + "/text.png", "hello, not a png\n");
  std::string bad_crc = good;
  bad_crc[20] = static_cast<char>(bad_crc[20] ^ 0x55);  // inside IHDR: critical chunk CRC fails
  spit(dir + "/crc.png", bad_crc);
  for (const char* name : {"missing.png", "truncated.png", "garbage.png", "text.png", "crc.png"}) {
    std::string path = dir + "/" + name;
    std::string message = error_of([&] { read_png_gray8(path); });
    EXPECT_NE(message.find(path), std::string::npos) << name << ": " << message;
  }
  EXPECT_NE(error_of([&] { read_png_gray8(dir + "/truncated.png"); }).find("truncated"),
            std::string::npos);
  fs::remove_all(dir);
}

// Mutated PNG bytes (flipped bytes, truncations): an lra::Error or a decoded image,
// never a crash or another exception (run under ASan/UBSan in CI).
TEST(PngIo, MutatedBytesGiveAnErrorOrAnImage) {
  auto pixels = random_pixels(32 * 32, 4);
  const std::string good = encode_png_gray8(32, 32, pixels.data(), "fixture");
  std::mt19937 gen(17);
  int errors = 0, images = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string bytes = good;
    if (trial % 5 == 0) {
      bytes.resize(gen() % bytes.size());
    } else {
      int flips = 1 + static_cast<int>(gen() % 4);
      for (int f = 0; f < flips; ++f) bytes[gen() % bytes.size()] = static_cast<char>(gen() & 0xff);
    }
    try {
      GrayImage image = decode_png_gray8(bytes, "mutant.png");
      EXPECT_EQ(image.pixels.size(), static_cast<std::size_t>(image.width) * image.height);
      ++images;
    } catch (const lra::Error& e) {
      EXPECT_NE(std::string(e.what()).find("mutant.png"), std::string::npos) << e.what();
      ++errors;
    }
  }
  EXPECT_GT(errors, 100);
  EXPECT_GT(images, 0);
}

// ---------------------------------------------------------------- loader fixtures

struct FixtureImage {
  std::vector<uint8_t> pixels;
  int label = 0;
};

// Writes <root>/<difficulty>/imgs/<k>/sample_<j>.png and metadata/<k>.npy for the given
// batches (each a list of images), with the official 11 fields.
void write_fixture(const std::string& root, const std::string& difficulty,
                   const std::vector<std::pair<int, std::vector<FixtureImage>>>& batches, int side,
                   bool crlf_first = false, bool no_final_newline_last = false) {
  std::string dir = root + "/" + difficulty;
  for (std::size_t b = 0; b < batches.size(); ++b) {
    const auto& [k, images] = batches[b];
    std::string text;
    for (std::size_t j = 0; j < images.size(); ++j) {
      reference_write(fmt::format("{}/imgs/{}/sample_{}.png", dir, k, j), side, side,
                      PNG_FORMAT_GRAY, images[j].pixels.data());
      text +=
          fmt::format("imgs/{} sample_{}.png {} {} 1.0 14 4 2 0.5 1 1", k, j, j, images[j].label);
      text += (crlf_first && b == 0) ? "\r\n" : "\n";
    }
    if (no_final_newline_last && b + 1 == batches.size()) text.pop_back();
    spit(fmt::format("{}/metadata/{}.npy", dir, k), text);
  }
}

YAML::Node task_node(const std::string& name, const std::string& root,
                     const std::string& extra = "") {
  return YAML::Load(fmt::format("{{name: {}, data_dir: '{}', cache: false{}}}", name, root, extra));
}

FixtureImage tagged_image(int id, int label, int side, unsigned seed) {
  FixtureImage img{random_pixels(static_cast<std::size_t>(side * side), seed), label};
  img.pixels[0] = static_cast<uint8_t>(id);  // identifies the image in the loaded data
  return img;
}

TEST(PathfinderLoader, ReadsOfficialLayoutSkipsEmptyImagesAndShiftsTokens) {
  std::string root = temp_dir("loader");
  std::map<int, FixtureImage> by_id;
  std::vector<std::pair<int, std::vector<FixtureImage>>> batches;
  int id = 1;
  std::vector<int> expected_order;
  for (int k : {10, 0, 1}) {  // numeric order is 0, 1, 10
    std::vector<FixtureImage> images;
    for (int j = 0; j < 5; ++j) {
      if (k == 1 && j == 2) {  // an empty image: skipped and counted
        images.push_back({std::vector<uint8_t>(32 * 32, 0), 1});
        continue;
      }
      FixtureImage img =
          tagged_image(id, (id * 7) % 3 == 0 ? 1 : 0, 32, static_cast<unsigned>(100 + id));
      by_id[id] = img;
      images.push_back(img);
      ++id;
    }
    batches.emplace_back(k, images);
  }
  write_fixture(root, "curv_contour_length_14", batches, 32, true, true);
  // Expected metadata order: batch 0 (ids 6..10), 1 (11, 12, 13, 14), 10 (1..5).
  for (int i : {6, 7, 8, 9, 10, 11, 12, 13, 14, 1, 2, 3, 4, 5}) expected_order.push_back(i);

  PathfinderLoadOptions options;
  options.data_dir = root;
  options.cache = false;
  PathfinderSet set = read_pathfinder_set(options);
  EXPECT_EQ(set.lines, 15);
  EXPECT_EQ(set.empty, 1);
  ASSERT_EQ(set.size(), 14);
  for (int64_t i = 0; i < set.size(); ++i) {
    int tag = set.image(i)[0];
    EXPECT_EQ(tag, expected_order[static_cast<std::size_t>(i)]);
    EXPECT_EQ(set.labels[static_cast<std::size_t>(i)], by_id[tag].label);
    EXPECT_TRUE(std::equal(by_id[tag].pixels.begin(), by_id[tag].pixels.end(), set.image(i)));
  }

  std::set<int> seen;
  int64_t total = 0;
  for (Split split : {Split::train, Split::val, Split::test}) {
    auto ds = load_dataset(task_node("pathfinder", root), split);
    EXPECT_EQ(ds->vocab_size(), 257);
    EXPECT_EQ(ds->num_classes(), 2);
    total += ds->size();
    for (int64_t e = 0; e < ds->size(); ++e) {
      const Example& ex = ds->example(e);
      ASSERT_EQ(ex.tokens.size(), 1024u);
      int tag = ex.tokens[0] - 1;
      ASSERT_TRUE(by_id.count(tag)) << tag;
      EXPECT_TRUE(seen.insert(tag).second) << "image " << tag << " in two splits";
      EXPECT_EQ(ex.label, by_id[tag].label);
      for (std::size_t t = 0; t < 1024; ++t) ASSERT_EQ(ex.tokens[t], by_id[tag].pixels[t] + 1);
    }
  }
  EXPECT_EQ(total, 14);
  // max_len truncates the pixel sequence.
  auto short_ds = load_dataset(task_node("pathfinder", root, ", max_len: 100"), Split::train);
  EXPECT_EQ(short_ds->example(0).tokens.size(), 100u);
  fs::remove_all(root);
}

TEST(PathfinderLoader, SplitIsAPartitionFixedBySeed) {
  for (int64_t n : {1, 7, 10, 1000}) {
    std::vector<int> owner(static_cast<std::size_t>(n), -1);
    for (Split split : {Split::train, Split::val, Split::test}) {
      auto part = pathfinder_split(n, 5, split);
      EXPECT_TRUE(std::is_sorted(part.begin(), part.end()));
      int64_t expected = split == Split::train ? n * 8 / 10
                         : split == Split::val ? n / 10
                                               : n - n * 8 / 10 - n / 10;
      EXPECT_EQ(static_cast<int64_t>(part.size()), expected);
      for (int64_t i : part) {
        EXPECT_EQ(owner[static_cast<std::size_t>(i)], -1);
        owner[static_cast<std::size_t>(i)] = static_cast<int>(split);
      }
    }
    EXPECT_EQ(std::count(owner.begin(), owner.end(), -1), 0);
  }
  EXPECT_EQ(pathfinder_split(1000, 5, Split::test), pathfinder_split(1000, 5, Split::test));
  EXPECT_NE(pathfinder_split(1000, 5, Split::test), pathfinder_split(1000, 6, Split::test));

  // Through the task: same split_seed, same examples; another seed, another test set.
  std::string root = temp_dir("split");
  std::vector<FixtureImage> images;
  for (int i = 1; i <= 40; ++i)
    images.push_back(tagged_image(i, i % 2, 32, static_cast<unsigned>(i)));
  write_fixture(root, "curv_baseline", {{0, images}}, 32);
  auto tags = [&](const std::string& extra) {
    auto ds = load_dataset(task_node("pathfinder", root, ", difficulty: curv_baseline" + extra),
                           Split::test);
    std::vector<int> t;
    for (int64_t e = 0; e < ds->size(); ++e) t.push_back(ds->example(e).tokens[0] - 1);
    return t;
  };
  EXPECT_EQ(tags(", split_seed: 3"), tags(", split_seed: 3"));
  EXPECT_NE(tags(", split_seed: 3"), tags(", split_seed: 4"));
  fs::remove_all(root);
}

TEST(PathfinderLoader, BadInputsNameMetadataFileAndLine) {
  struct Case {
    std::string name;
    std::function<void(const std::string& dir)> damage;  // damages line 3 of 0.npy
    std::string expect;                                  // text the error must contain
  };
  auto replace_line3 = [](const std::string& dir, const std::string& line) {
    std::string meta = dir + "/metadata/0.npy";
    std::string text = slurp(meta);
    std::vector<std::string> lines;
    std::size_t pos = 0;
    while (pos < text.size()) {
      std::size_t end = text.find('\n', pos);
      lines.push_back(text.substr(pos, end - pos));
      pos = end + 1;
    }
    lines[2] = line;
    std::string out;
    for (auto& l : lines) out += l + "\n";
    spit(meta, out);
  };
  std::vector<Case> cases = {
      {"missing file", [](const std::string& dir) { fs::remove(dir + "/imgs/0/sample_2.png"); },
       "does not exist"},
      {"truncated png",
       [](const std::string& dir) {
         std::string p = dir + "/imgs/0/sample_2.png";
         std::string bytes = slurp(p);
         spit(p, bytes.substr(0, bytes.size() / 2));
       },
       "sample_2.png"},
      {"not a png",
       [](const std::string& dir) { spit(dir + "/imgs/0/sample_2.png", "GIF89a....."); },
       "not a PNG"},
      {"wrong size",
       [](const std::string& dir) {
         std::vector<uint8_t> small(16 * 16, 9);
         reference_write(dir + "/imgs/0/sample_2.png", 16, 16, PNG_FORMAT_GRAY, small.data());
       },
       "16x16"},
      {"label 2",
       [&](const std::string& dir) {
         replace_line3(dir, "imgs/0 sample_2.png 2 2 1.0 14 4 2 0.5 1 1");
       },
       "label"},
      {"ten fields",
       [&](const std::string& dir) {
         replace_line3(dir, "imgs/0 sample_2.png 2 1 1.0 14 4 2 0.5 1");
       },
       "11"},
      {"missing via name",
       [&](const std::string& dir) {
         replace_line3(dir, "imgs/0 sample_99.png 2 1 1.0 14 4 2 0.5 1 1");
       },
       "sample_99.png"},
  };
  for (const Case& c : cases) {
    std::string root = temp_dir("bad");
    std::vector<FixtureImage> images;
    for (int i = 1; i <= 5; ++i) images.push_back(tagged_image(i, 0, 32, static_cast<unsigned>(i)));
    write_fixture(root, "curv_contour_length_14", {{0, images}, {1, images}}, 32);
    c.damage(root + "/curv_contour_length_14");
    std::string message =
        error_of([&] { load_dataset(task_node("pathfinder", root), Split::train); });
    EXPECT_NE(message.find("metadata/0.npy:3"), std::string::npos) << c.name << ": " << message;
    EXPECT_NE(message.find(c.expect), std::string::npos) << c.name << ": " << message;
    fs::remove_all(root);
  }
  // Config errors name the key.
  std::string message = error_of(
      [&] { load_dataset(task_node("pathfinder", "/nonexistent", ", bogus: 1"), Split::train); });
  EXPECT_NE(message.find("bogus"), std::string::npos) << message;
  message = error_of([&] { load_dataset(task_node("pathfinder", "/nonexistent"), Split::train); });
  EXPECT_NE(message.find("/nonexistent/curv_contour_length_14"), std::string::npos) << message;
}

// Mutated metadata text: a load or an lra::Error, never a crash.
TEST(PathfinderLoader, MutatedMetadataGivesAnErrorOrALoad) {
  std::string root = temp_dir("fuzz");
  std::vector<FixtureImage> images;
  for (int i = 1; i <= 6; ++i)
    images.push_back(tagged_image(i, i % 2, 32, static_cast<unsigned>(i)));
  write_fixture(root, "curv_contour_length_14", {{0, images}}, 32);
  const std::string meta = root + "/curv_contour_length_14/metadata/0.npy";
  const std::string good = slurp(meta);
  std::mt19937 gen(23);
  const char alphabet[] = " \n\r01/.xsample_imgs\t";
  int loads = 0, errors = 0;
  for (int trial = 0; trial < 200; ++trial) {
    std::string text = good;
    int edits = 1 + static_cast<int>(gen() % 3);
    for (int e = 0; e < edits; ++e)
      text[gen() % text.size()] = alphabet[gen() % (sizeof alphabet - 1)];
    spit(meta, text);
    try {
      auto ds = load_dataset(task_node("pathfinder", root), Split::train);
      EXPECT_GE(ds->size(), 0);
      ++loads;
    } catch (const lra::Error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 0);
  EXPECT_GT(loads, 0);
  fs::remove_all(root);
}

TEST(PathfinderLoader, CacheIsReusedAndRebuiltWhenStaleOrCorrupt) {
  std::string root = temp_dir("cache");
  std::vector<FixtureImage> images;
  for (int i = 1; i <= 12; ++i)
    images.push_back(tagged_image(i, i % 2, 32, static_cast<unsigned>(50 + i)));
  write_fixture(root, "curv_contour_length_9", {{0, images}}, 32);
  PathfinderLoadOptions options;
  options.data_dir = root;
  options.difficulty = "curv_contour_length_9";
  PathfinderSet first = read_pathfinder_set(options);
  EXPECT_FALSE(first.from_cache);
  ASSERT_FALSE(first.cache_path.empty());
  ASSERT_TRUE(fs::exists(first.cache_path));
  PathfinderSet second = read_pathfinder_set(options);
  EXPECT_TRUE(second.from_cache);
  EXPECT_EQ(second.pixels, first.pixels);
  EXPECT_EQ(second.labels, first.labels);

  // Corrupt one payload byte: the checksum fails and the cache is rebuilt.
  std::string bytes = slurp(first.cache_path);
  bytes[bytes.size() - 5] = static_cast<char>(bytes[bytes.size() - 5] ^ 1);
  spit(first.cache_path, bytes);
  PathfinderSet third = read_pathfinder_set(options);
  EXPECT_FALSE(third.from_cache);
  EXPECT_NE(third.cache_note.find("checksum"), std::string::npos) << third.cache_note;
  EXPECT_EQ(third.pixels, first.pixels);
  // Truncated cache file.
  spit(first.cache_path, bytes.substr(0, 100));
  EXPECT_FALSE(read_pathfinder_set(options).from_cache);

  // Change an image: the cache is stale and the new pixels are seen.
  FixtureImage changed = tagged_image(3, 0, 32, 999);
  std::string png = root + "/curv_contour_length_9/imgs/0/sample_2.png";
  reference_write(png, 32, 32, PNG_FORMAT_GRAY, changed.pixels.data());
  fs::last_write_time(png, fs::last_write_time(png) + std::chrono::seconds(5));
  PathfinderSet fourth = read_pathfinder_set(options);
  EXPECT_FALSE(fourth.from_cache);
  EXPECT_NE(fourth.cache_note.find("stale"), std::string::npos) << fourth.cache_note;
  EXPECT_TRUE(std::equal(changed.pixels.begin(), changed.pixels.end(), fourth.image(2)));
  EXPECT_TRUE(read_pathfinder_set(options).from_cache);
  fs::remove_all(root);
}

TEST(PathfinderLoader, PathXReads128PixelImages) {
  std::string root = temp_dir("pathx");
  std::vector<FixtureImage> images;
  for (int i = 1; i <= 3; ++i)
    images.push_back(tagged_image(i, i % 2, 128, static_cast<unsigned>(i)));
  write_fixture(root, "curv_contour_length_14", {{0, images}}, 128);
  auto ds = load_dataset(task_node("pathx", root), Split::test);
  ASSERT_EQ(ds->size(), 1);
  const Example& ex = ds->example(0);
  ASSERT_EQ(ex.tokens.size(), 16384u);
  const auto& src = images[static_cast<std::size_t>(ex.tokens[0] - 2)].pixels;
  for (std::size_t t = 0; t < src.size(); ++t) ASSERT_EQ(ex.tokens[t], src[t] + 1);
  // A 32x32 image in a Path-X folder is an error naming the line.
  std::string message = error_of([&] {
    write_fixture(root, "curv_baseline", {{0, {tagged_image(1, 0, 32, 1)}}}, 32);
    load_dataset(task_node("pathx", root, ", difficulty: curv_baseline"), Split::train);
  });
  EXPECT_NE(message.find("0.npy:1"), std::string::npos) << message;
  EXPECT_NE(message.find("expected 128x128"), std::string::npos) << message;
  fs::remove_all(root);
}

}  // namespace
