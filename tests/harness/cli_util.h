#pragma once
// Helpers for the harness tests: run the `lra` binary (LRA_BINARY) or a script, capture
// its output, and make per-test scratch folders. $LRA_TEST_BINARY and $LRA_TEST_SOURCE_DIR,
// when set, replace the build's binary and source paths (binaries built on one machine and
// run from another checkout: scripts/gpu_session.sh).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/csv.h"

namespace lra::test {

struct RunResult {
  int status = -1;
  std::string output;  // stdout and stderr together
};

inline std::string env_or(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value && *value ? std::string(value) : std::string(fallback);
}
inline std::string lra_binary() { return env_or("LRA_TEST_BINARY", LRA_BINARY); }
inline std::filesystem::path source_dir() {
  return std::filesystem::path(env_or("LRA_TEST_SOURCE_DIR", LRA_SOURCE_DIR));
}

inline RunResult run_command(const std::string& command) {
  RunResult r;
  std::string full = command + " 2>&1";
  std::FILE* pipe = popen(full.c_str(), "r");
  if (!pipe) return r;
  char buffer[4096];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) r.output.append(buffer, n);
  int raw = pclose(pipe);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return r;
}

inline std::string quote(const std::string& s) {
  std::string q = "'";
  q += s;
  q += "'";
  return q;
}

// Concatenation without `const char* + std::string` (GCC 12 -Wrestrict false positives).
inline std::string cat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (auto p : parts) out += p;
  return out;
}

inline RunResult run_lra(const std::string& args, const std::string& env = "") {
  return run_command((env.empty() ? "" : env + " ") + "OMP_NUM_THREADS=1 " + quote(lra_binary()) + " " + args);
}

// A fresh folder under the build tree's temp area, removed first if it exists.
inline std::filesystem::path scratch_dir(const std::string& name) {
  std::string base = "lra_harness_tests_";
  base += std::to_string(getpid());
  auto dir = std::filesystem::temp_directory_path() / base / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

inline void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

inline std::string column_value(const core::CsvTable& t, const std::vector<std::string>& row,
                                const std::string& column) {
  return row[t.column(column)];
}

inline std::filesystem::path venv_python() {
  return source_dir() / ".venv" / "bin" / "python";
}

}  // namespace lra::test
