#pragma once
// Helpers of the task tests: a temporary folder removed at the end, file writing, and
// loading a split through the task registry with a YAML `task:` section.
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tasks/dataset.h"

namespace lra::tasks::testing {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "lra_tasks_XXXXXX").string();
    char* made = ::mkdtemp(pattern.data());
    if (made == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline YAML::Node section(const std::string& name, const std::string& dir, bool cache = false) {
  YAML::Node node;
  node["name"] = name;
  node["data_dir"] = dir;
  if (name != "image") node["cache"] = cache;
  return node;
}

inline std::unique_ptr<Dataset> load(const YAML::Node& node, Split split) {
  return load_dataset(node, split, "test.task");
}

// Byte-level ids as the tests compute them by hand: byte + 1.
inline std::vector<int32_t> bytes_plus_one(const std::string& s) {
  std::vector<int32_t> ids;
  for (unsigned char c : s) ids.push_back(static_cast<int32_t>(c) + 1);
  return ids;
}

}  // namespace lra::tasks::testing
