// `lra merge OUT.csv IN.csv ...`: join CSVs of one schema (e.g. the shards of a reproduce).
#include <cstdio>
#include <string>

#include "core/error.h"
#include "harness/commands.h"
#include "harness/reproduce.h"

namespace lra::harness {
namespace {

int run_merge_command(const std::vector<std::string>& args) {
  ParsedArgs parsed = parse_args("merge", args, {}, {"--force"}, -1);
  LRA_CHECK(parsed.positionals.size() >= 2, "usage: lra merge OUT.csv IN1.csv [IN2.csv ...] [--force]");
  std::vector<std::string> inputs(parsed.positionals.begin() + 1, parsed.positionals.end());
  merge_csvs(parsed.positionals[0], inputs, parsed.has("--force"));
  std::fprintf(stderr, "merge: %zu files -> %s\n", inputs.size(), parsed.positionals[0].c_str());
  return 0;
}

}  // namespace

LRA_REGISTER_COMMAND(Command{
    "merge", "join CSVs of one schema (shards of a reproduce or sweep)",
    "usage: lra merge OUT.csv IN1.csv [IN2.csv ...] [--force]\n\n"
    "Writes the rows of every input to OUT.csv. The inputs must share one header (a schema\n"
    "mismatch is an error naming both files); a measurement present twice (same table, row,\n"
    "column, seed and metric for reproduce CSVs; same point for sweep CSVs) is an error naming\n"
    "both files. OUT.csv must not exist unless --force.",
    run_merge_command});

}  // namespace lra::harness
