#pragma once
// Names shown by `lra list`; each comes from its own registry.
#include <string>
#include <vector>

namespace lra::harness {

std::vector<std::string> attention_backend_names();
std::vector<std::string> task_names();

}  // namespace lra::harness
