// `lra list`: what this build offers — attention backends, tasks, devices.
#include <cstdio>

#include "core/cuda_runtime_info.h"
#include "core/parallel.h"
#include "harness/commands.h"
#include "harness/registry_names.h"

namespace lra::harness {
namespace {

void print_section(const char* title, const std::vector<std::string>& items) {
  std::printf("%s:\n", title);
  if (items.empty()) std::printf("  (none yet)\n");
  for (const auto& item : items) std::printf("  %s\n", item.c_str());
}

int run_list(const std::vector<std::string>& args) {
  parse_args("list", args, {}, {}, 0);
  print_section("backends", attention_backend_names());
  print_section("tasks", task_names());
  std::vector<std::string> devices{"cpu (" + std::to_string(core::num_threads()) + " threads)"};
  if (core::cuda_device_count() > 0) {
    for (const auto& line : core::cuda_device_descriptions()) devices.push_back(line);
  } else {
    devices.push_back("cuda: unavailable — " + core::cuda_unavailable_reason());
  }
  print_section("devices", devices);
  return 0;
}

}  // namespace

LRA_REGISTER_COMMAND(Command{"list", "list attention backends, tasks and devices",
                             "usage: lra list\n\nPrints the attention backends, LRA tasks and "
                             "devices this build offers.",
                             run_list});

}  // namespace lra::harness
