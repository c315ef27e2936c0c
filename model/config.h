#pragma once
// The typed view of a resolved training config (see configs/README.md for every key).
// load_config (model/train.h) reads files and overrides; parse_settings validates a
// config node and fills in every default; settings_to_yaml writes the resolved form.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>

#include "core/device.h"
#include "model/classifier.h"

namespace lra::model {

struct TaskSettings {
  std::string name, data_dir;
  int64_t max_len = 0;
  YAML::Node section;  // the whole `task:` section (loader-specific keys included)
};

struct ModelSettings {
  int64_t dim = 64, hidden = 128, heads = 2, head_dim = 32, layers = 2, head_hidden = 128;
  double dropout = 0.1, attention_dropout = 0.1;
  std::string pooling = "mean", positions = "learned";
};

struct TrainSettings {
  int64_t batch = 32, steps = 1000, warmup = 0, eval_every = 100, eval_batches = 0;
  int64_t eval_batch = 0, stop_at = 0, log_every = 10, threads = 0;
  int64_t seed = 0, data_seed = -1, dropout_seed = -1;
  double lr = 1e-4, weight_decay = 0, clip_norm = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-6;
  std::string dtype = "f32";
  std::string device = "cpu";  // where parameters, optimizer state and activations live
  // f32 products on cuda: fp32 or tf32 (tensor cores; core/precision.h).
  std::string matmul_precision = "fp32";
  bool test = true;
};

struct Settings {
  TaskSettings task;
  ModelSettings model;
  YAML::Node attention;
  TrainSettings train;
  std::string context;  // the config file, for errors
};

// Validates `config` (unknown keys, types, ranges, the attention spec against a
// backend built at max_len) and fills in defaults. Errors name `context` and the key.
Settings parse_settings(const YAML::Node& config, const std::string& context);
YAML::Node settings_to_yaml(const Settings& settings);
// Hash of everything that determines a run's results (excludes stop_at, threads,
// log_every): a checkpoint only resumes a run with the same hash.
uint64_t config_hash(const Settings& settings);
// The classifier of these settings for a task with this vocabulary and classes.
ClassifierConfig classifier_config(const Settings& settings, int64_t vocab, int64_t num_classes,
                                   bool pairs);
uint64_t derived_seed(int64_t explicit_seed, int64_t base_seed, uint64_t tag);

}  // namespace lra::model
