#include "tasks/task_io.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace lra::tasks {

std::string read_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  LRA_CHECK(f != nullptr, "{}: cannot open for reading ({})", path, std::strerror(errno));
  std::string data;
  char buffer[1 << 16];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) data.append(buffer, n);
  bool bad = std::ferror(f) != 0;
  std::fclose(f);
  LRA_CHECK(!bad, "{}: read error", path);
  return data;
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  LRA_CHECK(f != nullptr, "{}: cannot open for writing ({})", tmp, std::strerror(errno));
  bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    fail("{}: write failed", tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail("{}: cannot rename into place ({})", path, ec.message());
  }
}

bool LineReader::next(std::string_view& line) {
  if (pos_ >= text_.size()) return false;
  std::size_t end = text_.find('\n', pos_);
  if (end == std::string_view::npos) end = text_.size();
  line = text_.substr(pos_, end - pos_);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  pos_ = end + 1;
  ++line_;
  return true;
}

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    std::size_t at = text.find(sep, start);
    if (at == std::string_view::npos) {
      parts.push_back(text.substr(start));
      return parts;
    }
    parts.push_back(text.substr(start, at - start));
    start = at + 1;
  }
}

bool parse_int64(std::string_view text, int64_t& out) {
  if (text.empty()) return false;
  const char* begin = text.data();
  if (*begin == '+') ++begin;
  auto [ptr, ec] = std::from_chars(begin, text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

std::set<std::string> common_task_keys() { return {"name", "data_dir", "max_len", "cache", "cache_dir"}; }

TaskSection::TaskSection(const YAML::Node& node, std::string context, std::set<std::string> allowed)
    : node_(node), context_(std::move(context)) {
  LRA_CHECK(node_.IsMap(), "{}: the task section must be a map", context_);
  for (const auto& item : node_) {
    auto key = item.first.as<std::string>();
    if (!allowed.count(key)) {
      std::string names;
      for (const auto& a : allowed) names += (names.empty() ? "" : ", ") + a;
      fail("{}: unknown key '{}' for task '{}' (allowed: {})", context_, key,
           get_string("name", "?"), names);
    }
  }
}

bool TaskSection::has(const std::string& key) const { return static_cast<bool>(node_[key]); }

std::string TaskSection::get_string(const std::string& key, const std::string& fallback) const {
  YAML::Node v = node_[key];
  if (!v) return fallback;
  LRA_CHECK(v.IsScalar(), "{}.{}: expected a string", context_, key);
  return v.as<std::string>();
}

std::string TaskSection::require_string(const std::string& key) const {
  LRA_CHECK(has(key), "{}: missing required key '{}'", context_, key);
  std::string s = get_string(key, "");
  LRA_CHECK(!s.empty(), "{}.{}: must not be empty", context_, key);
  return s;
}

int64_t TaskSection::get_int(const std::string& key, int64_t fallback, int64_t min, int64_t max) const {
  YAML::Node v = node_[key];
  if (!v) return fallback;
  int64_t value = 0;
  LRA_CHECK(v.IsScalar() && parse_int64(v.Scalar(), value), "{}.{}: expected an integer, got '{}'",
            context_, key, v.IsScalar() ? v.Scalar() : std::string("(not a scalar)"));
  LRA_CHECK(value >= min && value <= max, "{}.{}: {} is out of range [{}, {}]", context_, key, value,
            min, max);
  return value;
}

double TaskSection::get_double(const std::string& key, double fallback, double min, double max) const {
  YAML::Node v = node_[key];
  if (!v) return fallback;
  double value = 0;
  bool ok = v.IsScalar();
  if (ok) {
    const std::string& s = v.Scalar();
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    ok = !s.empty() && ec == std::errc() && ptr == s.data() + s.size() && std::isfinite(value);
  }
  LRA_CHECK(ok, "{}.{}: expected a number", context_, key);
  LRA_CHECK(value >= min && value <= max, "{}.{}: {} is out of range [{}, {}]", context_, key, value,
            min, max);
  return value;
}

bool TaskSection::get_bool(const std::string& key, bool fallback) const {
  YAML::Node v = node_[key];
  if (!v) return fallback;
  LRA_CHECK(v.IsScalar(), "{}.{}: expected true or false", context_, key);
  const std::string& s = v.Scalar();
  if (s == "true" || s == "True" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "False" || s == "no" || s == "off") return false;
  fail("{}.{}: expected true or false, got '{}'", context_, key, s);
}

std::string TaskSection::get_choice(const std::string& key, const std::string& fallback,
                                    const std::vector<std::string>& choices) const {
  std::string value = get_string(key, fallback);
  std::string names;
  for (const auto& c : choices) {
    if (c == value) return value;
    names += (names.empty() ? "" : ", ") + c;
  }
  fail("{}.{}: '{}' is not one of: {}", context_, key, value, names);
}

const Example& VectorDataset::example(int64_t index) const {
  LRA_CHECK(index >= 0 && index < size(), "{}: example {} out of range (size {})", task_, index, size());
  return examples_[static_cast<std::size_t>(index)];
}

std::vector<int32_t> byte_tokens(std::string_view bytes, int64_t max_len) {
  std::size_t n = std::min<std::size_t>(bytes.size(), static_cast<std::size_t>(max_len));
  std::vector<int32_t> ids(n);
  for (std::size_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>(static_cast<unsigned char>(bytes[i])) + 1;
  return ids;
}

void validate_examples(const std::vector<Example>& examples, int num_classes, int vocab_size,
                       bool pairs, const std::string& where) {
  for (std::size_t i = 0; i < examples.size(); ++i) {
    const Example& e = examples[i];
    LRA_CHECK(e.label >= 0 && e.label < num_classes, "{}: example {}: label {} outside [0, {})", where,
              i, e.label, num_classes);
    LRA_CHECK(!e.tokens.empty(), "{}: example {}: empty sequence", where, i);
    LRA_CHECK(pairs == !e.tokens2.empty(), "{}: example {}: {}", where, i,
              pairs ? "second document is empty" : "unexpected second document");
    for (const auto* seq : {&e.tokens, &e.tokens2})
      for (int32_t id : *seq)
        LRA_CHECK(id >= 1 && id < vocab_size, "{}: example {}: token id {} outside [1, {})", where, i,
                  id, vocab_size);
  }
}

}  // namespace lra::tasks
