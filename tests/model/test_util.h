#pragma once
// Shared helpers of the model tests: a tiny in-memory dataset with a known answer and
// small attention specs for every backend the tests know about.
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>

#include <map>
#include <string>
#include <vector>

#include "attention/attention.h"
#include "core/rng.h"
#include "tasks/dataset.h"

namespace lra::test {

class MemoryDataset : public tasks::Dataset {
 public:
  MemoryDataset(std::vector<tasks::Example> examples, int classes, int vocab, bool pairs)
      : examples_(std::move(examples)), classes_(classes), vocab_(vocab), pairs_(pairs) {}
  std::string_view task() const override { return "memory"; }
  int64_t size() const override { return static_cast<int64_t>(examples_.size()); }
  const tasks::Example& example(int64_t i) const override {
    return examples_[static_cast<std::size_t>(i)];
  }
  int num_classes() const override { return classes_; }
  int vocab_size() const override { return vocab_; }
  bool pairs() const override { return pairs_; }

 private:
  std::vector<tasks::Example> examples_;
  int classes_, vocab_;
  bool pairs_;
};

// "Most frequent marker": tokens 1..4 are markers, 5..7 noise; the label is the marker
// (0..3) that occurs most often (examples with a tie are redrawn). Chance is 25%.
inline MemoryDataset majority_dataset(int64_t n, uint64_t seed, int64_t min_len, int64_t max_len) {
  core::Rng rng(seed);
  std::vector<tasks::Example> out;
  while (static_cast<int64_t>(out.size()) < n) {
    int64_t len = min_len + static_cast<int64_t>(rng.uniform_scalar() *
                                                 static_cast<double>(max_len - min_len + 1));
    tasks::Example e;
    int counts[4] = {0, 0, 0, 0};
    for (int64_t t = 0; t < len; ++t) {
      auto tok = static_cast<int32_t>(1 + rng.uniform_scalar() * 7);
      if (tok > 7) tok = 7;
      if (tok <= 4) ++counts[tok - 1];
      e.tokens.push_back(tok);
    }
    int best = 0, ties = 0;
    for (int c = 1; c < 4; ++c)
      if (counts[c] > counts[best]) best = c;
    for (int c = 0; c < 4; ++c) ties += counts[c] == counts[best];
    if (ties != 1) continue;
    e.label = best;
    out.push_back(std::move(e));
  }
  return MemoryDataset(std::move(out), 4, 8, false);
}

// Small valid specs for the LRA backends at tiny shapes; other names get {type: name}.
inline YAML::Node tiny_spec(const std::string& name) {
  YAML::Node n;
  n["type"] = name;
  if (name == "nystrom") {
    n["landmarks"] = 2;
    n["conv_kernel"] = 3;
  } else if (name == "linformer") {
    n["k"] = 3;
  } else if (name == "performer") {
    n["features"] = 8;
  } else if (name == "skeinformer") {
    n["samples"] = 3;
  }
  return n;
}

inline const std::vector<std::string>& lra_backend_names() {
  static const std::vector<std::string> names{"softmax",   "nystrom", "linformer",
                                              "performer", "linear",  "skeinformer"};
  return names;
}

inline bool has_backend(const std::string& name) { return attention::backends().count(name) > 0; }

// An empty scratch folder under the system temp dir, unique to this process.
inline std::string temp_dir(const std::string& name) {
  std::filesystem::path p = std::filesystem::temp_directory_path() /
                            ("lra_model_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  return p.string();
}

// The tiny classifier every training test uses on a MemoryDataset task: dim 16, FFN 32,
// 2 heads, 1 layer, batch 16. Callers add the train keys they exercise.
inline YAML::Node tiny_training_config(const YAML::Node& attention, int64_t max_len) {
  YAML::Node c;
  c["task"]["name"] = "memory";
  c["task"]["max_len"] = max_len;
  c["model"]["dim"] = 16;
  c["model"]["hidden"] = 32;
  c["model"]["heads"] = 2;
  c["model"]["layers"] = 1;
  c["attention"] = attention;
  c["train"]["batch"] = 16;
  return c;
}

}  // namespace lra::test
