#include "tasks/dataset.h"

#include <algorithm>

#include "core/error.h"
#include "core/rng.h"

namespace lra::tasks {

std::string_view split_name(Split split) {
  switch (split) {
    case Split::train: return "train";
    case Split::val: return "val";
    case Split::test: return "test";
  }
  return "?";
}

namespace {
std::map<std::string, TaskInfo>& table() {
  static std::map<std::string, TaskInfo> entries;
  return entries;
}
}  // namespace

bool register_task(TaskInfo info) {
  std::string name = info.name;
  table().emplace(name, std::move(info));
  return true;
}

const std::map<std::string, TaskInfo>& tasks() { return table(); }

namespace {
std::map<std::string, GeneratorInfo>& generator_table() {
  static std::map<std::string, GeneratorInfo> entries;
  return entries;
}
}  // namespace

bool register_generator(GeneratorInfo info) {
  std::string name = info.task;
  generator_table().emplace(name, std::move(info));
  return true;
}

const std::map<std::string, GeneratorInfo>& generators() { return generator_table(); }

const TaskInfo& task_info(const std::string& name) {
  auto it = table().find(name);
  if (it == table().end()) {
    std::string known;
    for (const auto& [n, info] : table()) known += (known.empty() ? "" : ", ") + n;
    fail("unknown task '{}' (known: {})", name, known);
  }
  return it->second;
}

std::unique_ptr<Dataset> load_dataset(const YAML::Node& task_section, Split split,
                                      const std::string& context) {
  LRA_CHECK(task_section.IsMap() && task_section["name"], "{}: task section needs a 'name' key",
            context);
  return task_info(task_section["name"].as<std::string>()).load(task_section, split, context);
}

Batch make_batch(const Dataset& dataset, const std::vector<int64_t>& indices, int64_t max_len,
                 bool pad_to_longest, core::DType mask_dtype) {
  LRA_CHECK(max_len >= 1, "make_batch: max_len must be >= 1, got {}", max_len);
  Batch b;
  b.batch = static_cast<int64_t>(indices.size());
  int64_t longest = 1;
  for (int64_t i : indices) {
    LRA_CHECK(i >= 0 && i < dataset.size(), "make_batch: example {} out of range (size {})", i,
              dataset.size());
    const Example& e = dataset.example(i);
    longest = std::max<int64_t>(longest, static_cast<int64_t>(e.tokens.size()));
    if (dataset.pairs()) longest = std::max<int64_t>(longest, static_cast<int64_t>(e.tokens2.size()));
  }
  b.seq = pad_to_longest ? std::min(longest, max_len) : max_len;
  auto fill = [&](std::vector<int32_t>& ids, core::Tensor& mask, bool second) {
    ids.assign(static_cast<std::size_t>(b.batch * b.seq), 0);
    mask = core::Tensor::zeros(core::Shape{b.batch, b.seq}, mask_dtype);
    for (int64_t r = 0; r < b.batch; ++r) {
      const Example& e = dataset.example(indices[static_cast<std::size_t>(r)]);
      const auto& tokens = second ? e.tokens2 : e.tokens;
      int64_t n = std::min<int64_t>(b.seq, static_cast<int64_t>(tokens.size()));
      for (int64_t t = 0; t < n; ++t) {
        ids[static_cast<std::size_t>(r * b.seq + t)] = tokens[static_cast<std::size_t>(t)];
        if (mask_dtype == core::DType::f32) mask.data<float>()[r * b.seq + t] = 1.0f;
        else mask.data<double>()[r * b.seq + t] = 1.0;
      }
    }
  };
  fill(b.ids, b.mask, false);
  if (dataset.pairs()) fill(b.ids2, b.mask2, true);
  for (int64_t i : indices) b.labels.push_back(dataset.example(i).label);
  return b;
}

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  // Fisher-Yates driven by the counter-based RNG at offset (epoch, i): reproducible.
  core::Rng rng(seed ^ 0x6f72646572ull, static_cast<uint64_t>(epoch) << 40);
  for (int64_t i = n - 1; i > 0; --i) {
    auto j = static_cast<int64_t>(rng.uniform_scalar() * static_cast<double>(i + 1));
    if (j > i) j = i;
    std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(j)]);
  }
  return order;
}

}  // namespace lra::tasks
