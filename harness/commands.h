#pragma once
// The subcommand table of the `lra` executable and the shared argument parser.
// Each cmd_*.cpp registers its command with a static LRA_REGISTER_COMMAND.
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace lra::harness {

struct Command {
  std::string name;     // e.g. "list"
  std::string summary;  // one line for `lra --help`
  std::string usage;    // full text for `lra help NAME` / `lra NAME --help`
  std::function<int(const std::vector<std::string>& args)> run;
};

bool register_command(Command command);
const std::map<std::string, Command>& command_table();

// Parsed command line of one subcommand: options that take a value (repeatable ones
// keep every occurrence, in order), boolean flags, and positional arguments.
struct ParsedArgs {
  std::map<std::string, std::vector<std::string>> values;
  std::set<std::string> flags;
  std::vector<std::string> positionals;

  bool has(const std::string& option) const { return values.count(option) || flags.count(option); }
  // Last value of an option, or `fallback` when absent.
  std::string get(const std::string& option, const std::string& fallback = "") const;
  // Last value of a required option; throws lra::Error naming the option when absent.
  std::string require(const std::string& option) const;
  const std::vector<std::string>& all(const std::string& option) const;
};

// Parses `args` for command `command`: `value_options` take a value (`--out F` or
// `--out=F`), `flag_options` take none. Unknown options, missing values and more than
// `max_positionals` positionals (-1 = any) are errors naming the culprit.
ParsedArgs parse_args(const std::string& command, const std::vector<std::string>& args,
                      const std::set<std::string>& value_options,
                      const std::set<std::string>& flag_options, int max_positionals);

}  // namespace lra::harness

#define LRA_CONCAT_INNER(a, b) a##b
#define LRA_CONCAT(a, b) LRA_CONCAT_INNER(a, b)
#define LRA_REGISTER_COMMAND(...) \
  static const bool LRA_CONCAT(lra_command_registered_, __LINE__) = \
      ::lra::harness::register_command(__VA_ARGS__)
