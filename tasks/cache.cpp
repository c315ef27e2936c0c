#include "tasks/cache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "tasks/task_io.h"

namespace lra::tasks {

namespace {

constexpr char magic[8] = {'L', 'R', 'A', 'C', 'A', 'C', 'H', 'E'};
constexpr uint32_t format_version = 1;

uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

uint64_t mix(uint64_t h) {  // splitmix64 finaliser
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

template <typename T>
void put(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

// Bounds-checked little reader over the cache bytes.
struct Cursor {
  const std::string& bytes;
  std::size_t pos = 0;
  template <typename T>
  bool get(T& value) {
    if (bytes.size() - pos < sizeof(T)) return false;
    std::memcpy(&value, bytes.data() + pos, sizeof(T));
    pos += sizeof(T);
    return true;
  }
};

std::string fallback_root() {
  if (const char* d = std::getenv("LRA_CACHE_DIR"); d && *d) return d;
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d) return std::string(d) + "/lra";
  if (const char* d = std::getenv("HOME"); d && *d) return std::string(d) + "/.cache/lra";
  return "/tmp/lra-cache";
}

bool writable_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  return !ec && ::access(dir.c_str(), W_OK) == 0;
}

std::string cache_folder(const CacheOptions& options) {
  if (!options.cache_dir.empty()) return writable_dir(options.cache_dir) ? options.cache_dir : "";
  std::string local = options.data_dir + "/.lra_cache";
  if (writable_dir(local)) return local;
  std::error_code ec;
  std::string abs = std::filesystem::absolute(options.data_dir, ec).lexically_normal().string();
  std::string folder = fmt::format("{}/{:016x}", fallback_root(), checksum64(abs.data(), abs.size()));
  return writable_dir(folder) ? folder : "";
}

}  // namespace

uint64_t checksum64(const void* data, std::size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = 0x9e3779b97f4a7c15ull ^ (size * 0xff51afd7ed558ccdull);
  std::size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = rotl(h ^ (w * 0x87c37b91114253d5ull), 31) * 0x4cf5ad432745937full;
  }
  uint64_t tail = 0;
  for (std::size_t k = 0; i + k < size; ++k) tail |= static_cast<uint64_t>(p[i + k]) << (8 * k);
  h = rotl(h ^ (tail * 0x87c37b91114253d5ull), 31) * 0x4cf5ad432745937full;
  return mix(h);
}

std::string cache_key(const std::string& params, const std::vector<std::string>& sources) {
  std::string key = fmt::format("lra-cache v{}\n{}\n", format_version, params);
  for (const auto& path : sources) {
    struct stat st {};
    LRA_CHECK(::stat(path.c_str(), &st) == 0, "{}: cannot stat ({})", path, std::strerror(errno));
    key += fmt::format("{} {} {}.{:09d}\n", path, static_cast<int64_t>(st.st_size),
                       static_cast<int64_t>(st.st_mtim.tv_sec), static_cast<int64_t>(st.st_mtim.tv_nsec));
  }
  return key;
}

std::string encode_cache(const std::string& key, const std::vector<Example>& examples) {
  int32_t max_id = 0;
  std::size_t total = 0;
  for (const auto& e : examples) {
    for (int32_t id : e.tokens) max_id = std::max(max_id, id);
    for (int32_t id : e.tokens2) max_id = std::max(max_id, id);
    total += e.tokens.size() + e.tokens2.size();
  }
  const uint32_t width = max_id < 65536 ? 2 : 4;
  std::string out;
  out.reserve(64 + key.size() + examples.size() * 12 + total * width);
  out.append(magic, sizeof magic);
  put<uint32_t>(out, format_version);
  put<uint32_t>(out, width);
  put<uint64_t>(out, key.size());
  out += key;
  put<uint64_t>(out, examples.size());
  for (const auto& e : examples) {
    put<int32_t>(out, e.label);
    put<uint32_t>(out, static_cast<uint32_t>(e.tokens.size()));
    put<uint32_t>(out, static_cast<uint32_t>(e.tokens2.size()));
    for (const auto* seq : {&e.tokens, &e.tokens2})
      for (int32_t id : *seq) {
        if (width == 2) put<uint16_t>(out, static_cast<uint16_t>(id));
        else put<int32_t>(out, id);
      }
  }
  put<uint64_t>(out, checksum64(out.data(), out.size()));
  return out;
}

bool decode_cache(const std::string& bytes, const std::string& key, std::vector<Example>& examples,
                  std::string& why) {
  examples.clear();
  if (bytes.size() < sizeof magic + 8 + 8 || std::memcmp(bytes.data(), magic, sizeof magic) != 0) {
    why = "not a cache file";
    return false;
  }
  uint64_t stored = 0;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  if (checksum64(bytes.data(), bytes.size() - 8) != stored) {
    why = "checksum mismatch (corrupt or truncated)";
    return false;
  }
  Cursor c{bytes, sizeof magic};
  uint32_t version = 0, width = 0;
  uint64_t key_size = 0, count = 0;
  const std::size_t end = bytes.size() - 8;
  if (!c.get(version) || version != format_version) {
    why = "different cache format version";
    return false;
  }
  if (!c.get(width) || (width != 2 && width != 4) || !c.get(key_size) || key_size > end - c.pos) {
    why = "malformed header";
    return false;
  }
  if (bytes.compare(c.pos, key_size, key) != 0 || key_size != key.size()) {
    why = "stale (sources or parameters changed)";
    return false;
  }
  c.pos += key_size;
  if (!c.get(count) || count > (end - c.pos) / 12) {
    why = "malformed example count";
    return false;
  }
  examples.resize(count);
  for (auto& e : examples) {
    uint32_t n1 = 0, n2 = 0;
    if (!c.get(e.label) || !c.get(n1) || !c.get(n2) ||
        (static_cast<uint64_t>(n1) + n2) * width > end - c.pos) {
      why = "malformed example record";
      examples.clear();
      return false;
    }
    for (auto [seq, n] : {std::pair{&e.tokens, n1}, std::pair{&e.tokens2, n2}}) {
      seq->resize(n);
      const char* src = bytes.data() + c.pos;  // bounds checked above
      if (width == 2) {
        for (uint32_t t = 0; t < n; ++t) {
          uint16_t v;
          std::memcpy(&v, src + 2 * t, 2);
          (*seq)[t] = v;
        }
      } else if (n > 0) {
        std::memcpy(seq->data(), src, 4 * static_cast<std::size_t>(n));
      }
      c.pos += static_cast<std::size_t>(n) * width;
    }
  }
  if (c.pos != end) {
    why = "trailing bytes";
    examples.clear();
    return false;
  }
  return true;
}

CacheResult cached_load(const CacheOptions& options, const std::string& prefix, const std::string& params,
                        const std::vector<std::string>& sources,
                        const std::function<std::vector<Example>()>& build) {
  CacheResult result;
  if (!options.enabled) {
    result.examples = build();
    return result;
  }
  const std::string key = cache_key(params, sources);
  std::string identity = params;
  for (const auto& s : sources) identity += "\n" + s;
  const std::string name = fmt::format("{}_{:016x}", prefix, checksum64(identity.data(), identity.size()));
  std::string folder = cache_folder(options);
  if (!folder.empty()) {
    result.path = folder + "/" + name + ".bin";
    std::error_code ec;
    if (std::filesystem::exists(result.path, ec)) {
      std::string why;
      std::string bytes;
      try {
        bytes = read_file(result.path);
      } catch (const Error& e) {
        why = e.what();
      }
      if (why.empty() && decode_cache(bytes, key, result.examples, why)) {
        result.from_cache = true;
        return result;
      }
      result.rebuilt_because = why;
      std::fprintf(stderr, "lra: cache %s not used (%s); rebuilding\n", result.path.c_str(), why.c_str());
    }
  }
  result.examples = build();
  if (!result.path.empty()) {
    try {
      write_file_atomic(result.path, encode_cache(key, result.examples));
    } catch (const Error& e) {
      std::fprintf(stderr, "lra: warning: cache not written: %s\n", e.what());
      result.path.clear();
    }
  }
  return result;
}

}  // namespace lra::tasks
