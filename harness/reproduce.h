#pragma once
// `lra reproduce`: rebuild a published table from a config that names its rows (backend
// settings), columns (tasks or lengths), base configs and the published number of every
// cell. Accuracy tables train one model per cell (model::train); efficiency tables time
// one attention call per cell with the sweep machinery.
#include <yaml-cpp/yaml.h>

#include <map>
#include <string>
#include <vector>

namespace lra::harness {

struct TableRow {
  std::string name;
  YAML::Node attention;           // the row's attention spec
  std::vector<std::string> set;   // overrides for this row's cells (accuracy)
  // column -> metric -> published value (absent = no published number)
  std::map<std::string, std::map<std::string, double>> published;
};

struct TableColumn {
  std::string name;
  std::string config;             // accuracy: base task config (resolved path)
  std::vector<std::string> set;   // overrides for this column's cells (accuracy)
  int64_t seq_len = 0;            // efficiency: the sequence length
};

struct TableConfig {
  std::string name, kind, title, source, context;  // kind: accuracy | efficiency
  std::vector<std::string> metrics;                 // accuracy: test_accuracy
  std::vector<TableRow> rows;
  std::vector<TableColumn> columns;
  std::vector<int64_t> seeds{0};
  std::vector<std::string> set;   // overrides for every cell (accuracy)
  YAML::Node measure;             // efficiency: device, dtype, batch, heads, ... pass
};

TableConfig load_table_config(const std::string& path);

struct TableCell {
  std::size_t row = 0, column = 0;
  int64_t seed = 0;
  std::size_t index = 0;  // position in the full cell list (rows x columns x seeds)
};

// Every cell in order (row-major, seeds innermost).
std::vector<TableCell> table_cells(const TableConfig& table);
// Cells of shard i of n (index % n == i).
std::vector<TableCell> shard_cells(const std::vector<TableCell>& cells, int shard, int num_shards);
// Parses "i/N" (0 <= i < N).
std::pair<int, int> parse_shard(const std::string& text);
// Keeps cells matching any "row:column" selector of a comma-separated list ('*' = any).
std::vector<TableCell> select_cells(const TableConfig& table, const std::vector<TableCell>& cells,
                                    const std::string& list);

const std::vector<std::string>& reproduce_columns();
const std::vector<std::string>& reproduce_key_columns();

struct ReproduceOptions {
  std::string out_csv;
  std::string runs_dir;             // where accuracy cells train (one folder per cell)
  std::vector<std::string> set;     // command-line overrides
  std::string cells;                // selectors, empty = all
  int shard = 0, num_shards = 1;
  bool dry_run = false;
};

// Runs the missing cells; returns the number of cells that failed.
int run_reproduce(const TableConfig& table, const ReproduceOptions& options);

// Markdown tables (ours vs published) from the rows of a reproduce CSV for this table.
std::string markdown_table(const TableConfig& table, const std::string& csv_path);

// `lra merge`: joins CSVs of one schema; duplicate keys and schema mismatches are errors.
void merge_csvs(const std::string& out, const std::vector<std::string>& inputs, bool force);

}  // namespace lra::harness
