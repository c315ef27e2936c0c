#pragma once
// The common interface of LRA tasks: a split of examples (token-id sequences + label;
// Retrieval has two sequences per example), the task registry, and batching into padded
// [B, N] id arrays with key masks.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace lra::tasks {

enum class Split { train, val, test };
std::string_view split_name(Split split);

struct Example {
  std::vector<int32_t> tokens;   // token ids, 0 = padding (never inside a sequence)
  std::vector<int32_t> tokens2;  // second document (Retrieval only), else empty
  int32_t label = 0;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual std::string_view task() const = 0;
  virtual int64_t size() const = 0;
  virtual const Example& example(int64_t index) const = 0;
  virtual int num_classes() const = 0;
  virtual int vocab_size() const = 0;  // ids are in [0, vocab_size)
  virtual bool pairs() const { return false; }  // two sequences per example (Retrieval)
};

struct TaskInfo {
  std::string name;         // "listops", "text", "retrieval", "image", "pathfinder", "pathx"
  std::string description;  // one line for `lra list`
  int num_classes = 0;
  int vocab_size = 0;
  int64_t default_max_len = 0;
  bool pairs = false;
  // Loads one split from the `task:` config section (keys validated by the task:
  // unknown keys are errors naming `context`).
  std::function<std::unique_ptr<Dataset>(const YAML::Node& task_section, Split split,
                                         const std::string& context)>
      load;
};

bool register_task(TaskInfo info);
const std::map<std::string, TaskInfo>& tasks();
const TaskInfo& task_info(const std::string& name);  // throws lra::Error for unknown names
std::unique_ptr<Dataset> load_dataset(const YAML::Node& task_section, Split split,
                                      const std::string& context = "task");

// A padded batch: ids [B * N] row-major, key mask [B, N] (1 token, 0 padding) in the
// requested dtype, labels [B]. Retrieval fills ids2/mask2 with the second documents.
struct Batch {
  int64_t batch = 0, seq = 0;
  std::vector<int32_t> ids, ids2;
  core::Tensor mask, mask2;
  std::vector<int32_t> labels;
};

// Builds the batch of dataset examples `indices`, truncating each sequence to max_len.
// N = max_len, or the longest sequence in the batch when pad_to_longest is true.
Batch make_batch(const Dataset& dataset, const std::vector<int64_t>& indices, int64_t max_len,
                 bool pad_to_longest = false, core::DType mask_dtype = core::DType::f32);

// The order of examples in an epoch: a permutation of [0, n) that depends only on
// (seed, epoch), so training can resume from (epoch, position).
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace lra::tasks

#define LRA_TASKS_CONCAT_INNER(a, b) a##b
#define LRA_TASKS_CONCAT(a, b) LRA_TASKS_CONCAT_INNER(a, b)
#define LRA_REGISTER_TASK(...)                                        \
  static const bool LRA_TASKS_CONCAT(lra_task_registered_, __LINE__) = \
      ::lra::tasks::register_task(__VA_ARGS__)

namespace lra::tasks {

// A data generator for `lra data generate TASK --out DIR --seed S [options]`.
// `options` holds the command's --key value pairs without the leading dashes
// (e.g. {"train": "1000"}); keys outside `option_names` are rejected by the command.
struct GeneratorInfo {
  std::string task;                       // e.g. "listops", "pathfinder"
  std::string usage;                      // options text for --help
  std::vector<std::string> option_names;  // accepted options besides --out and --seed
  std::function<void(const std::string& out_dir, uint64_t seed,
                     const std::map<std::string, std::string>& options)>
      run;
};
bool register_generator(GeneratorInfo info);
const std::map<std::string, GeneratorInfo>& generators();

}  // namespace lra::tasks

#define LRA_REGISTER_GENERATOR(...)                                        \
  static const bool LRA_TASKS_CONCAT(lra_generator_registered_, __LINE__) = \
      ::lra::tasks::register_generator(__VA_ARGS__)
