#include "tasks/pathfinder.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>

#include "core/error.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "tasks/cache.h"
#include "tasks/png_io.h"
#include "tasks/task_io.h"

namespace lra::tasks {

namespace {

namespace fs = std::filesystem;

struct Record {
  std::string path;  // the PNG
  int32_t meta = 0;  // index into the metadata file list
  int64_t line = 0;  // 1-based line in that file
  uint8_t label = 0;
  int64_t file_size = 0;
  int64_t mtime_ns = 0;
};

// parallel_for whose body may throw: the first error in chunk order is rethrown, so the
// reported error does not depend on the thread count.
template <typename Body>
void parallel_for_checked(int64_t n, int64_t grain, const Body& body) {
  if (n <= 0) return;
  int64_t chunks = (n + grain - 1) / grain;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(chunks));
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

std::vector<std::string_view> split_whitespace(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    std::size_t start = i;
    while (i < line.size() && !std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

// Metadata files ordered by their numeric stem (0.npy, 1.npy, ..., 10.npy), then by name.
std::vector<fs::path> metadata_files(const std::string& folder) {
  std::error_code ec;
  LRA_CHECK(fs::is_directory(folder, ec),
            "pathfinder: metadata folder {} not found (expected "
            "<data_dir>/<difficulty>/metadata/<k>.npy)",
            folder);
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(folder, ec))
    if (entry.path().extension() == ".npy") files.push_back(entry.path());
  LRA_CHECK(!ec, "pathfinder: cannot list {} ({})", folder, ec.message());
  LRA_CHECK(!files.empty(), "pathfinder: no metadata files (*.npy) in {}", folder);
  auto key = [](const fs::path& p) {
    std::string stem = p.stem().string();
    int64_t number = 0;
    bool numeric = parse_int64(stem, number) && number >= 0;
    return std::make_tuple(numeric ? 0 : 1, numeric ? number : 0, stem);
  };
  std::sort(files.begin(), files.end(),
            [&](const fs::path& a, const fs::path& b) { return key(a) < key(b); });
  return files;
}

std::string where(const std::vector<fs::path>& metas, const Record& r) {
  return fmt::format("{}:{}", metas[static_cast<std::size_t>(r.meta)].string(), r.line);
}

uint64_t hash_combine(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  h *= 0xff51afd7ed558ccdull;
  return h ^ (h >> 33);
}

constexpr char cache_magic[8] = {'L', 'R', 'A', 'P', 'F', 'C', 'A', 'C'};
constexpr uint32_t cache_version = 1;

struct CacheHeader {
  char magic[8];
  uint32_t version;
  uint32_t side;
  uint64_t fingerprint;
  uint64_t lines;
  uint64_t empty;
  uint64_t count;
  uint64_t checksum;
};

uint64_t payload_checksum(const PathfinderSet& set) {
  uint64_t a = checksum64(set.labels.data(), set.labels.size());
  uint64_t b = checksum64(set.pixels.data(), set.pixels.size());
  return hash_combine(a, b);
}

// Reads a cache file; returns false (with `why`) when it is absent, stale or corrupt.
bool read_cache(const std::string& path, uint64_t fingerprint, int side, PathfinderSet& set,
                std::string& why) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  CacheHeader h{};
  bool ok = std::fread(&h, sizeof h, 1, f) == 1;
  if (!ok || std::memcmp(h.magic, cache_magic, 8) != 0 || h.version != cache_version) {
    why = "not a cache file of this version";
  } else if (h.side != static_cast<uint32_t>(side) || h.fingerprint != fingerprint) {
    why = "stale (the metadata or image files changed)";
  } else {
    const uint64_t pixels = static_cast<uint64_t>(side) * static_cast<uint64_t>(side);
    std::error_code ec;
    auto size = fs::file_size(path, ec);
    if (ec || h.count > (uint64_t{1} << 40) / pixels ||
        size != sizeof h + h.count + h.count * pixels) {
      why = "truncated or wrong size";
    } else {
      set.labels.resize(h.count);
      set.pixels.resize(h.count * pixels);
      ok = std::fread(set.labels.data(), 1, set.labels.size(), f) == set.labels.size() &&
           std::fread(set.pixels.data(), 1, set.pixels.size(), f) == set.pixels.size();
      if (!ok) {
        why = "read error";
      } else if (payload_checksum(set) != h.checksum) {
        why = "checksum mismatch (corrupt)";
      } else {
        bool labels_ok =
            std::all_of(set.labels.begin(), set.labels.end(), [](uint8_t l) { return l <= 1; });
        if (!labels_ok) why = "bad label bytes";
      }
    }
  }
  std::fclose(f);
  if (!why.empty()) {
    set.labels.clear();
    set.pixels.clear();
    return false;
  }
  set.side = side;
  set.lines = static_cast<int64_t>(h.lines);
  set.empty = static_cast<int64_t>(h.empty);
  return true;
}

void write_cache(const std::string& path, uint64_t fingerprint, const PathfinderSet& set) {
  CacheHeader h{};
  std::memcpy(h.magic, cache_magic, 8);
  h.version = cache_version;
  h.side = static_cast<uint32_t>(set.side);
  h.fingerprint = fingerprint;
  h.lines = static_cast<uint64_t>(set.lines);
  h.empty = static_cast<uint64_t>(set.empty);
  h.count = static_cast<uint64_t>(set.size());
  h.checksum = payload_checksum(set);
  std::string bytes;
  bytes.reserve(sizeof h + set.labels.size() + set.pixels.size());
  bytes.append(reinterpret_cast<const char*>(&h), sizeof h);
  bytes.append(reinterpret_cast<const char*>(set.labels.data()), set.labels.size());
  bytes.append(reinterpret_cast<const char*>(set.pixels.data()), set.pixels.size());
  write_file_atomic(path, bytes);
}

}  // namespace

PathfinderSet read_pathfinder_set(const PathfinderLoadOptions& options) {
  const int side = options.side;
  LRA_CHECK(side > 0, "pathfinder: bad image side {}", side);
  const std::string dir = options.data_dir + "/" + options.difficulty;
  std::error_code ec;
  LRA_CHECK(fs::is_directory(dir, ec),
            "pathfinder: {} not found (data_dir {} should hold the difficulty "
            "folders, e.g. curv_baseline, curv_contour_length_9, curv_contour_length_14)",
            dir, options.data_dir);
  const std::vector<fs::path> metas = metadata_files(dir + "/metadata");

  // 1. Parse every metadata line.
  std::vector<Record> records;
  uint64_t fingerprint = hash_combine(0x70617468ull, static_cast<uint64_t>(side));
  for (std::size_t m = 0; m < metas.size(); ++m) {
    const std::string meta = metas[m].string();
    std::string text = read_file(meta);
    LRA_CHECK(!(text.size() >= 6 && text.compare(0, 6, "\x93NUMPY") == 0),
              "{}: binary NumPy metadata is not supported; expected the LRA release's text lines "
              "'imgs/<k> sample_<j>.png <j> <label> ...'",
              meta);
    fingerprint = hash_combine(fingerprint, checksum64(meta.data(), meta.size()));
    fingerprint = hash_combine(fingerprint, checksum64(text.data(), text.size()));
    LineReader reader(text);
    std::string_view line;
    while (reader.next(line)) {
      auto fields = split_whitespace(line);
      if (fields.empty()) continue;  // blank line
      const int64_t n = reader.line_number();
      LRA_CHECK(fields.size() == 11,
                "{}:{}: expected 11 space-separated fields (imgs/<k> sample_<j>.png <j> <label> "
                "<continuity> <contour_length> <distractor_length> <paddle_length> <thickness> "
                "<margin> <contrasts>), got {}",
                meta, n, fields.size());
      LRA_CHECK(fields[3] == "0" || fields[3] == "1",
                "{}:{}: label (field 4) must be 0 or 1, got '{}'", meta, n, fields[3]);
      LRA_CHECK(fields[1].find('/') == std::string_view::npos,
                "{}:{}: file name (field 2) must not contain '/', got '{}'", meta, n, fields[1]);
      Record r;
      r.path = fmt::format("{}/{}/{}", dir, fields[0], fields[1]);
      r.meta = static_cast<int32_t>(m);
      r.line = n;
      r.label = static_cast<uint8_t>(fields[3][0] - '0');
      records.push_back(std::move(r));
    }
  }
  LRA_CHECK(!records.empty(), "pathfinder: the metadata files in {}/metadata list no images", dir);

  // 2. Every named file must exist; its size and modification time key the cache.
  const auto count = static_cast<int64_t>(records.size());
  parallel_for_checked(count, 256, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      Record& r = records[static_cast<std::size_t>(i)];
      struct stat st {};
      LRA_CHECK(::stat(r.path.c_str(), &st) == 0 && S_ISREG(st.st_mode),
                "{}: names {}, which does not exist or is not a file", where(metas, r), r.path);
      r.file_size = static_cast<int64_t>(st.st_size);
      r.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    }
  });
  for (const Record& r : records) {
    fingerprint = hash_combine(fingerprint, checksum64(r.path.data(), r.path.size()));
    fingerprint = hash_combine(fingerprint, static_cast<uint64_t>(r.file_size));
    fingerprint = hash_combine(fingerprint, static_cast<uint64_t>(r.mtime_ns));
  }

  PathfinderSet set;
  set.side = side;
  std::string cache_path;
  if (options.cache) {
    std::string folder =
        options.cache_dir.empty() ? options.data_dir + "/.lra_cache" : options.cache_dir;
    cache_path = fmt::format("{}/pathfinder_{}_{}.bin", folder, options.difficulty, side);
    std::string why;
    if (read_cache(cache_path, fingerprint, side, set, why)) {
      set.from_cache = true;
      set.cache_path = cache_path;
      return set;
    }
    if (!why.empty()) {
      set.cache_note = fmt::format("cache {} rebuilt: {}", cache_path, why);
      std::fprintf(stderr, "lra: pathfinder cache %s not used (%s); rebuilding\n",
                   cache_path.c_str(), why.c_str());
    }
  }

  // 3. Decode all images in parallel into their slots (order = metadata order).
  const auto pixels = static_cast<std::size_t>(side) * static_cast<std::size_t>(side);
  std::vector<uint8_t> all(static_cast<std::size_t>(count) * pixels);
  std::vector<uint8_t> empty(static_cast<std::size_t>(count), 0);
  parallel_for_checked(count, 64, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const Record& r = records[static_cast<std::size_t>(i)];
      GrayImage image;
      try {
        image = decode_png_gray8(read_file(r.path), r.path);
      } catch (const Error& err) {
        fail("{}: {}", where(metas, r), err.what());
      }
      LRA_CHECK(image.width == side && image.height == side, "{}: {} is {}x{}, expected {}x{}",
                where(metas, r), r.path, image.width, image.height, side, side);
      std::copy(image.pixels.begin(), image.pixels.end(),
                all.begin() + static_cast<std::ptrdiff_t>(i * side * side));
      empty[static_cast<std::size_t>(i)] =
          std::all_of(image.pixels.begin(), image.pixels.end(), [](uint8_t v) { return v == 0; })
              ? 1
              : 0;
    }
  });

  // 4. Drop the empty images (they exist in the official release), keep the rest.
  set.lines = count;
  for (int64_t i = 0; i < count; ++i) {
    if (empty[static_cast<std::size_t>(i)]) {
      ++set.empty;
      continue;
    }
    set.labels.push_back(records[static_cast<std::size_t>(i)].label);
  }
  set.pixels.resize(set.labels.size() * pixels);
  std::size_t kept = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (empty[static_cast<std::size_t>(i)]) continue;
    std::copy_n(all.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(i) * pixels),
                pixels, set.pixels.begin() + static_cast<std::ptrdiff_t>(kept * pixels));
    ++kept;
  }
  LRA_CHECK(set.size() > 0, "pathfinder: every image in {} is empty", dir);

  if (!cache_path.empty()) {
    try {
      fs::create_directories(fs::path(cache_path).parent_path());
      write_cache(cache_path, fingerprint, set);
      set.cache_path = cache_path;
    } catch (const std::exception& e) {
      set.cache_note = fmt::format("cache not written: {}", e.what());
      std::fprintf(stderr, "lra: warning: pathfinder cache not written: %s\n", e.what());
    }
  }
  return set;
}

std::vector<int64_t> pathfinder_split(int64_t n, uint64_t split_seed, Split split) {
  std::vector<int64_t> order(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  // Fisher-Yates from the counter-based generator: the split is a function of the seed.
  core::Rng rng(split_seed ^ 0x5350c1175eedull, 0);
  for (int64_t i = n - 1; i > 0; --i) {
    auto j = static_cast<int64_t>(rng.uniform_scalar() * static_cast<double>(i + 1));
    std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(std::min(j, i))]);
  }
  const int64_t n_train = n * 8 / 10, n_val = n / 10;
  int64_t begin = 0, end = n_train;
  if (split == Split::val) begin = n_train, end = n_train + n_val;
  if (split == Split::test) begin = n_train + n_val, end = n;
  std::vector<int64_t> part(order.begin() + begin, order.begin() + end);
  std::sort(part.begin(), part.end());
  return part;
}

namespace {

std::unique_ptr<Dataset> load_split(const std::string& task, int side, const YAML::Node& node,
                                    Split split, const std::string& context) {
  std::set<std::string> keys = common_task_keys();
  keys.insert("difficulty");
  keys.insert("split_seed");
  TaskSection section(node, context, keys);
  PathfinderLoadOptions options;
  options.side = side;
  options.data_dir = section.require_string("data_dir");
  options.difficulty =
      section.get_choice("difficulty", "curv_contour_length_14",
                         {"curv_baseline", "curv_contour_length_9", "curv_contour_length_14"});
  options.cache = section.get_bool("cache", true);
  options.cache_dir = section.get_string("cache_dir", "");
  const int64_t max_len = section.get_int("max_len", int64_t{side} * side, 1, int64_t{1} << 30);
  const auto split_seed = static_cast<uint64_t>(section.get_int("split_seed", 0, 0, INT64_MAX));

  PathfinderSet set = read_pathfinder_set(options);
  std::vector<int64_t> indices = pathfinder_split(set.size(), split_seed, split);
  const int64_t tokens = std::min<int64_t>(max_len, int64_t{side} * side);
  std::vector<Example> examples(indices.size());
  for (std::size_t e = 0; e < indices.size(); ++e) {
    const uint8_t* image = set.image(indices[e]);
    examples[e].tokens.resize(static_cast<std::size_t>(tokens));
    for (int64_t t = 0; t < tokens; ++t)
      examples[e].tokens[static_cast<std::size_t>(t)] = int32_t{image[t]} + 1;
    examples[e].label = set.labels[static_cast<std::size_t>(indices[e])];
  }
  std::fprintf(stderr, "%s: %s/%s: %lld images (%lld empty skipped)%s; %s split (seed %llu): %zu\n",
               task.c_str(), options.data_dir.c_str(), options.difficulty.c_str(),
               static_cast<long long>(set.size()), static_cast<long long>(set.empty),
               set.from_cache ? " from cache" : "", std::string(split_name(split)).c_str(),
               static_cast<unsigned long long>(split_seed), examples.size());
  return std::make_unique<VectorDataset>(task, std::move(examples), 2, 257, false);
}

}  // namespace

LRA_REGISTER_TASK(TaskInfo{
    "pathfinder",
    "Pathfinder 32x32: are the two markers connected? (1024 pixel tokens, id = pixel + 1)", 2, 257,
    1024, false, [](const YAML::Node& node, Split split, const std::string& context) {
      return load_split("pathfinder", 32, node, split, context);
    }});

LRA_REGISTER_TASK(TaskInfo{
    "pathx", "Path-X 128x128: Pathfinder at 16K pixel tokens (id = pixel + 1)", 2, 257, 16384,
    false, [](const YAML::Node& node, Split split, const std::string& context) {
      return load_split("pathx", 128, node, split, context);
    }});

}  // namespace lra::tasks
