#pragma once
// A binary cache of a loaded split: built once from the source files into a compact file
// and read back on later loads. The file stores a key (cache format, loader parameters,
// and the path, size and modification time of every source file) and a checksum; a key
// mismatch (stale) or a failed check (corrupt, truncated) makes the loader rebuild it.
//
// Location: `<data_dir>/.lra_cache/<name>.bin`; when that folder cannot be written,
// `$LRA_CACHE_DIR`, else `$XDG_CACHE_HOME/lra`, else `$HOME/.cache/lra`, in a
// subfolder named after a hash of the data folder's absolute path; or the config's
// `task.cache_dir`.
#include <functional>
#include <string>
#include <vector>

#include "tasks/dataset.h"

namespace lra::tasks {

struct CacheOptions {
  bool enabled = true;
  std::string data_dir;   // where the sources live
  std::string cache_dir;  // explicit folder (empty: the rule above)
};

struct CacheResult {
  std::vector<Example> examples;
  bool from_cache = false;  // true when read from a valid cache file
  std::string path;         // the cache file used or written ("" when disabled/unwritable)
  std::string rebuilt_because;  // why an existing cache file was not used ("" if none)
};

// The key text of a set of source files plus loader parameters.
std::string cache_key(const std::string& params, const std::vector<std::string>& sources);

// Returns the examples from a valid cache file for (params, sources), or builds them with
// `build` and writes the cache (atomically). The file name is `<prefix>_<hash>.bin`, the
// hash over `params` and the source paths only, so a stale file (sources changed) is
// found, rejected by its key and overwritten. Failure to write is reported on stderr and
// otherwise ignored (the data are still returned).
CacheResult cached_load(const CacheOptions& options, const std::string& prefix, const std::string& params,
                        const std::vector<std::string>& sources,
                        const std::function<std::vector<Example>()>& build);

// Low-level: serialise / parse a cache file. read_cache returns false and sets `why`
// for any mismatch or corruption; it never throws on bad bytes.
std::string encode_cache(const std::string& key, const std::vector<Example>& examples);
bool decode_cache(const std::string& bytes, const std::string& key, std::vector<Example>& examples,
                  std::string& why);

// 64-bit checksum used by the cache.
uint64_t checksum64(const void* data, std::size_t size);

}  // namespace lra::tasks
