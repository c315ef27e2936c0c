#include "harness/registry_names.h"

#include "attention/attention.h"
#include "tasks/dataset.h"

namespace lra::harness {

std::vector<std::string> attention_backend_names() {
  std::vector<std::string> names;
  for (const auto& [name, info] : attention::backends())
    names.push_back(name + " — " + info.description +
                    (info.takes_bf16 ? " [f32, f64, bf16]" : " [f32, f64]"));
  return names;
}

std::vector<std::string> task_names() {
  std::vector<std::string> names;
  for (const auto& [name, info] : tasks::tasks()) names.push_back(name + " — " + info.description);
  return names;
}

}  // namespace lra::harness
