// `lra reproduce CONFIG`: run every missing cell of a published table, CSV + Markdown.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "harness/commands.h"
#include "harness/reproduce.h"

namespace lra::harness {
namespace {

// "0,1,2" -> {0, 1, 2}; anything but non-negative integers is an error naming the flag.
std::vector<int64_t> parse_seed_list(const std::string& text) {
  std::vector<int64_t> seeds;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    LRA_CHECK(!item.empty() && item.find_first_not_of("0123456789") == std::string::npos,
              "--seeds: '{}' is not a comma-separated list of non-negative integers", text);
    seeds.push_back(std::stoll(item));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return seeds;
}

int run_reproduce_command(const std::vector<std::string>& args) {
  ParsedArgs parsed = parse_args("reproduce", args, {"--out", "--cells", "--shard", "--set", "--runs", "--seeds"},
                                 {"--dry-run", "--print"}, 1);
  LRA_CHECK(parsed.positionals.size() == 1, "usage: lra reproduce CONFIG [--out FILE.csv] [--cells LIST] "
                                            "[--shard i/N] [--seeds LIST] [--set key=value ...] [--runs DIR] [--dry-run] [--print]");
  TableConfig table = load_table_config(parsed.positionals[0]);
  if (parsed.has("--seeds")) table.seeds = parse_seed_list(parsed.get("--seeds"));
  ReproduceOptions options;
  options.out_csv = parsed.get("--out", "results/tables/" + table.name + ".csv");
  options.runs_dir = parsed.get("--runs", "results/runs");
  options.set = parsed.all("--set");
  options.cells = parsed.get("--cells");
  options.dry_run = parsed.has("--dry-run");
  if (parsed.has("--shard")) {
    auto [i, n] = parse_shard(parsed.get("--shard"));
    options.shard = i;
    options.num_shards = n;
  }
  if (parsed.has("--print")) {
    std::printf("%s", markdown_table(table, options.out_csv).c_str());
    return 0;
  }
  int failures = run_reproduce(table, options);
  if (!options.dry_run) std::printf("%s", markdown_table(table, options.out_csv).c_str());
  LRA_CHECK(failures == 0, "reproduce: {} cells failed (see above); re-run to retry them", failures);
  return 0;
}

}  // namespace

LRA_REGISTER_COMMAND(Command{
    "reproduce", "rebuild a published table (accuracy or efficiency), ours beside theirs",
    "usage: lra reproduce CONFIG [--out FILE.csv] [--cells LIST] [--shard i/N] [--seeds LIST]\n"
    "                     [--set key=value ...] [--runs DIR] [--dry-run] [--print]\n\n"
    "CONFIG (configs/tables/*.yaml) names rows (attention specs), columns (task configs, or\n"
    "sequence lengths for kind: efficiency) and the published number of every cell. Every\n"
    "cell missing from --out (default results/tables/<name>.csv) is run: accuracy cells train\n"
    "(model::train, run folder <runs>/<table>/<row>/<column>/seed<k>, resumed from its\n"
    "last.ckpt), efficiency cells time one attention call. One CSV row per cell, seed and\n"
    "metric; a Markdown table (ours / published) is printed at the end.\n\n"
    "  --cells LIST   comma-separated ROW:COLUMN selectors, '*' matches any (e.g. 'nystrom-64:*')\n"
    "  --shard i/N    only the cells whose index % N == i (0 <= i < N), e.g. one Slurm array task\n"
    "  --seeds LIST   comma-separated seeds instead of the table's (e.g. 0 for a quick pass)\n"
    "  --set K=V      accuracy: config override for every cell (e.g. train.steps=100);\n"
    "                 efficiency: measure.KEY=VALUE (e.g. measure.device=cuda)\n"
    "  --runs DIR     where accuracy cells train (default results/runs)\n"
    "  --dry-run      list the selected cells and whether they are done; run nothing\n"
    "  --print        print the Markdown table of what --out holds; run nothing",
    run_reproduce_command});

}  // namespace lra::harness
