#include "harness/commands.h"

#include "core/error.h"

namespace lra::harness {

namespace {
std::map<std::string, Command>& table() {
  static std::map<std::string, Command> commands;
  return commands;
}
}  // namespace

bool register_command(Command command) {
  std::string name = command.name;
  table().emplace(name, std::move(command));
  return true;
}

const std::map<std::string, Command>& command_table() { return table(); }

std::string ParsedArgs::get(const std::string& option, const std::string& fallback) const {
  auto it = values.find(option);
  return it == values.end() || it->second.empty() ? fallback : it->second.back();
}

std::string ParsedArgs::require(const std::string& option) const {
  auto it = values.find(option);
  LRA_CHECK(it != values.end() && !it->second.empty(), "missing required option {}", option);
  return it->second.back();
}

const std::vector<std::string>& ParsedArgs::all(const std::string& option) const {
  static const std::vector<std::string> none;
  auto it = values.find(option);
  return it == values.end() ? none : it->second;
}

ParsedArgs parse_args(const std::string& command, const std::vector<std::string>& args,
                      const std::set<std::string>& value_options,
                      const std::set<std::string>& flag_options, int max_positionals) {
  ParsedArgs parsed;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() > 1 && arg[0] == '-' && arg != "-") {
      std::string name = arg, value;
      bool inline_value = false;
      if (auto eq = arg.find('='); eq != std::string::npos) {
        name = arg.substr(0, eq);
        value = arg.substr(eq + 1);
        inline_value = true;
      }
      if (flag_options.count(name)) {
        LRA_CHECK(!inline_value, "lra {}: option {} takes no value", command, name);
        parsed.flags.insert(name);
      } else if (value_options.count(name)) {
        if (!inline_value) {
          LRA_CHECK(i + 1 < args.size(), "lra {}: option {} needs a value", command, name);
          value = args[++i];
        }
        parsed.values[name].push_back(value);
      } else {
        fail("lra {}: unknown option '{}' (see `lra {} --help`)", command, name, command);
      }
    } else {
      parsed.positionals.push_back(arg);
    }
  }
  LRA_CHECK(max_positionals < 0 || static_cast<int>(parsed.positionals.size()) <= max_positionals,
            "lra {}: unexpected argument '{}' (see `lra {} --help`)", command,
            parsed.positionals.empty() ? "" : parsed.positionals.back(), command);
  return parsed;
}

}  // namespace lra::harness
