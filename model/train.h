#pragma once
// Training entry points: resolved configs and the training loop behind `lra train`.
#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lra::model {

// Loads a config file (YAML: sections task, model, attention, train), applies
// "section.key=value" overrides (YAML-parsed values), validates every key (unknown
// keys / wrong types are lra::Error naming the key and file) and returns the resolved
// config with every default filled in.
// A section may also be given as the path of a YAML file holding that section
// (`attention: ../attention/nystrom-64.yaml`, relative to the including file), and an
// override "section=FILE.yaml" replaces a whole section from such a file.
YAML::Node load_config(const std::string& path, const std::vector<std::string>& overrides);

struct TrainSummary {
  double best_val_accuracy = 0, test_accuracy = 0;  // test accuracy of the best-val checkpoint
  int64_t steps = 0, best_step = 0;
  double wall_seconds = 0, tokens_per_second = 0;
  std::size_t peak_bytes = 0;
  std::string out_dir;
};

// Trains per the resolved config into out_dir (config.yaml, metrics.csv, best.ckpt,
// last.ckpt, summary.json); resume=true continues from out_dir/last.ckpt.
TrainSummary train(const YAML::Node& config, const std::string& out_dir, bool resume);

}  // namespace lra::model
