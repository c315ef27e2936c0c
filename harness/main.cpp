// The `lra` executable: dispatches to the registered subcommands. Every lra::Error (and
// any other exception) ends as one line on stderr and exit status 1.
#include <yaml-cpp/exceptions.h>

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "core/error.h"
#include "harness/commands.h"
#include "lra_version.h"

namespace {

void print_help() {
  std::printf(
      "lra %s — Long Range Arena harness: attention backends, tasks, training, sweeps.\n\n"
      "usage: lra COMMAND [options]\n       lra --help | --version\n       lra help COMMAND\n\n"
      "commands:\n",
      LRA_VERSION);
  for (const auto& [name, command] : lra::harness::command_table())
    std::printf("  %-10s %s\n", name.c_str(), command.summary.c_str());
  std::printf("\nRun `lra COMMAND --help` for the options of a command.\n");
}

int run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    print_help();
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version") {
    std::printf("lra %s (commit %s)\n", LRA_VERSION, LRA_GIT_COMMIT);
    return 0;
  }
  const auto& table = lra::harness::command_table();
  if (args[0] == "help") {
    LRA_CHECK(args.size() == 2, "usage: lra help COMMAND");
    auto it = table.find(args[1]);
    LRA_CHECK(it != table.end(), "unknown command '{}' (see `lra --help`)", args[1]);
    std::printf("%s\n", it->second.usage.c_str());
    return 0;
  }
  if (!args[0].empty() && args[0][0] == '-') lra::fail("unknown option '{}' (see `lra --help`)", args[0]);
  auto it = table.find(args[0]);
  LRA_CHECK(it != table.end(), "unknown command '{}' (see `lra --help`)", args[0]);
  std::vector<std::string> rest(args.begin() + 1, args.end());
  for (const auto& a : rest)
    if (a == "--help" || a == "-h") {
      std::printf("%s\n", it->second.usage.c_str());
      return 0;
    }
  return it->second.run(rest);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const lra::Error& e) {
    std::fprintf(stderr, "lra: error: %s\n", e.what());
  } catch (const YAML::Exception& e) {
    std::fprintf(stderr, "lra: error: YAML: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lra: error: %s\n", e.what());
  }
  return 1;
}
