#pragma once
// Shared helpers of the task loaders: whole-file reading, line splitting that accepts
// LF and CRLF ends and a missing final newline, strict number parsing, the `task:`
// config section checker, and an in-memory Dataset.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "tasks/dataset.h"

namespace lra::tasks {

// Reads a whole file; throws lra::Error naming the path when it cannot be read.
std::string read_file(const std::string& path);
// Writes a file atomically (temporary file in the same folder, then rename).
void write_file_atomic(const std::string& path, std::string_view bytes);

// Iterates the lines of a text buffer: '\n' ends a line, a '\r' right before it is
// dropped, the last line may lack its newline. Line numbers start at 1.
class LineReader {
 public:
  explicit LineReader(std::string_view text) : text_(text) {}
  bool next(std::string_view& line);
  int64_t line_number() const { return line_; }

 private:
  std::string_view text_;
  std::size_t pos_ = 0;
  int64_t line_ = 0;
};

// Splits on every `sep` (no quoting).
std::vector<std::string_view> split(std::string_view text, char sep);

// Strict integer parsing of the whole field; nullopt-like failure via bool.
bool parse_int64(std::string_view text, int64_t& out);

// Validated access to the `task:` config section. Unknown keys and wrong types are
// errors naming `context` and the key.
class TaskSection {
 public:
  TaskSection(const YAML::Node& node, std::string context, std::set<std::string> allowed);
  std::string context() const { return context_; }
  bool has(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  std::string require_string(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t fallback, int64_t min, int64_t max) const;
  double get_double(const std::string& key, double fallback, double min, double max) const;
  bool get_bool(const std::string& key, bool fallback) const;
  // A string that must be one of `choices`.
  std::string get_choice(const std::string& key, const std::string& fallback,
                         const std::vector<std::string>& choices) const;

 private:
  YAML::Node node_;
  std::string context_;
};

// Keys every task accepts: name, data_dir, max_len, cache, cache_dir.
std::set<std::string> common_task_keys();

// A split held in memory.
class VectorDataset : public Dataset {
 public:
  VectorDataset(std::string task, std::vector<Example> examples, int num_classes, int vocab_size,
                bool pairs)
      : task_(std::move(task)),
        examples_(std::move(examples)),
        num_classes_(num_classes),
        vocab_size_(vocab_size),
        pairs_(pairs) {}
  std::string_view task() const override { return task_; }
  int64_t size() const override { return static_cast<int64_t>(examples_.size()); }
  const Example& example(int64_t index) const override;
  int num_classes() const override { return num_classes_; }
  int vocab_size() const override { return vocab_size_; }
  bool pairs() const override { return pairs_; }
  std::vector<Example>& examples() { return examples_; }

 private:
  std::string task_;
  std::vector<Example> examples_;
  int num_classes_, vocab_size_;
  bool pairs_;
};

// Byte-level tokens: id = byte + 1 (0 stays padding), at most max_len of them.
std::vector<int32_t> byte_tokens(std::string_view bytes, int64_t max_len);

// Checks every example of a loaded split: label in [0, classes), ids in [1, vocab),
// non-empty sequences, second document present exactly when `pairs`. Throws naming
// `where` and the example index.
void validate_examples(const std::vector<Example>& examples, int num_classes, int vocab_size,
                       bool pairs, const std::string& where);

}  // namespace lra::tasks
