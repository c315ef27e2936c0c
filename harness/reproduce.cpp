#include "harness/reproduce.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <tuple>

#include "attention/attention.h"
#include "core/csv.h"
#include "core/error.h"
#include "core/version.h"
#include "harness/sweep.h"
#include "model/train.h"

namespace lra::harness {
namespace fs = std::filesystem;
namespace {

std::string scalar_string(const YAML::Node& node, const std::string& what) {
  LRA_CHECK(node && node.IsScalar(), "{} must be a string", what);
  return node.Scalar();
}

std::vector<std::string> string_list(const YAML::Node& node, const std::string& what) {
  std::vector<std::string> out;
  if (!node) return out;
  LRA_CHECK(node.IsSequence(), "{} must be a list of key=value strings", what);
  for (const auto& item : node) out.push_back(scalar_string(item, what + " entry"));
  return out;
}

double number(const YAML::Node& node, const std::string& what) {
  LRA_CHECK(node && node.IsScalar(), "{} must be a number", what);
  try {
    return node.as<double>();
  } catch (const YAML::Exception&) {
    fail("{} must be a number, got '{}'", what, node.Scalar());
  }
}

void check_keys(const YAML::Node& node, const std::set<std::string>& known, const std::string& what) {
  LRA_CHECK(node.IsMap(), "{} must be a mapping", what);
  for (const auto& entry : node) {
    std::string key = entry.first.as<std::string>();
    if (!known.count(key)) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      fail("{}: unknown key '{}' (known: {})", what, key, list);
    }
  }
}

// Accuracy as a percentage (train() reports fractions in [0, 1]).
double as_percent(double accuracy) { return accuracy * 100.0; }

std::string cell_key(const std::string& table, const std::string& row, const std::string& column,
                     int64_t seed, const std::string& metric) {
  return fmt::format("{}|{}|{}|{}|{}", table, row, column, seed, metric);
}

std::string node_text(const YAML::Node& node, const char* key) {
  return node && node[key] && node[key].IsScalar() ? node[key].Scalar() : std::string();
}

}  // namespace

TableConfig load_table_config(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    fail("cannot read table config '{}'", path);
  } catch (const YAML::Exception& e) {
    fail("{}: YAML error: {}", path, e.what());
  }
  TableConfig t;
  t.context = path;
  check_keys(root, {"name", "kind", "title", "source", "seeds", "set", "measure", "columns", "rows", "notes"},
             path);
  t.name = scalar_string(root["name"], path + ": name");
  t.kind = scalar_string(root["kind"], path + ": kind");
  LRA_CHECK(t.kind == "accuracy" || t.kind == "efficiency",
            "{}: kind must be 'accuracy' or 'efficiency', got '{}'", path, t.kind);
  if (root["title"]) t.title = scalar_string(root["title"], path + ": title");
  if (root["source"]) t.source = scalar_string(root["source"], path + ": source");
  if (root["seeds"]) {
    t.seeds.clear();
    LRA_CHECK(root["seeds"].IsSequence(), "{}: seeds must be a list of integers", path);
    for (const auto& s : root["seeds"]) t.seeds.push_back(static_cast<int64_t>(number(s, path + ": seeds entry")));
    LRA_CHECK(!t.seeds.empty(), "{}: seeds is empty", path);
  }
  t.set = string_list(root["set"], path + ": set");
  t.metrics = t.kind == "accuracy" ? std::vector<std::string>{"test_accuracy"}
                                   : std::vector<std::string>{"memory_mb", "time_ms"};
  const fs::path base = fs::path(path).parent_path();

  if (t.kind == "efficiency") {
    LRA_CHECK(root["measure"] && root["measure"].IsMap(), "{}: efficiency tables need a 'measure' mapping",
              path);
    t.measure = root["measure"];
    check_keys(t.measure,
               {"device", "dtype", "batch", "heads", "head_dim", "pass", "warmup", "min_reps", "max_reps",
                "min_seconds", "max_call_seconds", "memory_limit", "seed"},
               path + ": measure");
    LRA_CHECK(t.set.empty(), "{}: 'set' applies to accuracy tables only", path);
  } else {
    LRA_CHECK(!root["measure"], "{}: 'measure' applies to efficiency tables only", path);
  }

  LRA_CHECK(root["columns"] && root["columns"].IsSequence() && root["columns"].size() > 0,
            "{}: columns must be a non-empty list", path);
  std::set<std::string> column_names;
  for (const auto& c : root["columns"]) {
    TableColumn col;
    std::string what = path + ": columns entry";
    if (t.kind == "accuracy") {
      check_keys(c, {"name", "config", "set"}, what);
      col.name = scalar_string(c["name"], what + " name");
      std::string config = scalar_string(c["config"], what + " '" + col.name + "' config");
      fs::path p(config);
      col.config = (p.is_absolute() ? p : base / p).lexically_normal().string();
      col.set = string_list(c["set"], what + " '" + col.name + "' set");
    } else {
      check_keys(c, {"name", "seq_len"}, what);
      col.name = scalar_string(c["name"], what + " name");
      col.seq_len = static_cast<int64_t>(number(c["seq_len"], what + " '" + col.name + "' seq_len"));
      LRA_CHECK(col.seq_len > 0, "{} '{}': seq_len must be positive", what, col.name);
    }
    LRA_CHECK(column_names.insert(col.name).second, "{}: duplicate column '{}'", path, col.name);
    t.columns.push_back(col);
  }

  LRA_CHECK(root["rows"] && root["rows"].IsSequence() && root["rows"].size() > 0,
            "{}: rows must be a non-empty list", path);
  std::set<std::string> row_names;
  for (const auto& r : root["rows"]) {
    TableRow row;
    std::string what = path + ": rows entry";
    check_keys(r, {"name", "attention", "set", "published", "notes"}, what);
    row.name = scalar_string(r["name"], what + " name");
    what += " '" + row.name + "'";
    LRA_CHECK(r["attention"] && r["attention"].IsMap() && r["attention"]["type"],
              "{}: needs an attention spec with a 'type'", what);
    row.attention = YAML::Clone(r["attention"]);
    row.set = string_list(r["set"], what + " set");
    LRA_CHECK(t.kind == "accuracy" || row.set.empty(), "{}: 'set' applies to accuracy tables only", what);
    if (r["published"]) {
      check_keys(r["published"], column_names, what + " published");
      for (const auto& entry : r["published"]) {
        std::string col = entry.first.as<std::string>();
        if (t.kind == "accuracy") {
          row.published[col]["test_accuracy"] = number(entry.second, what + " published." + col);
        } else {
          check_keys(entry.second, {"memory_mb", "time_ms"}, what + " published." + col);
          for (const auto& m : entry.second)
            row.published[col][m.first.as<std::string>()] =
                number(m.second, what + " published." + col + "." + m.first.as<std::string>());
        }
      }
    }
    LRA_CHECK(row_names.insert(row.name).second, "{}: duplicate row '{}'", path, row.name);
    t.rows.push_back(row);
  }
  return t;
}

std::vector<TableCell> table_cells(const TableConfig& table) {
  std::vector<TableCell> cells;
  for (std::size_t r = 0; r < table.rows.size(); ++r)
    for (std::size_t c = 0; c < table.columns.size(); ++c)
      for (int64_t seed : table.seeds) {
        TableCell cell;
        cell.row = r;
        cell.column = c;
        cell.seed = seed;
        cell.index = cells.size();
        cells.push_back(cell);
      }
  return cells;
}

std::pair<int, int> parse_shard(const std::string& text) {
  auto slash = text.find('/');
  LRA_CHECK(slash != std::string::npos, "--shard must be i/N (e.g. 0/4), got '{}'", text);
  int i = -1, n = -1;
  try {
    std::size_t used_i = 0, used_n = 0;
    i = std::stoi(text.substr(0, slash), &used_i);
    n = std::stoi(text.substr(slash + 1), &used_n);
    LRA_CHECK(used_i == slash && used_n == text.size() - slash - 1, "--shard must be i/N, got '{}'", text);
  } catch (const std::logic_error&) {
    fail("--shard must be i/N (e.g. 0/4), got '{}'", text);
  }
  LRA_CHECK(n >= 1 && i >= 0 && i < n, "--shard {}: need 0 <= i < N", text);
  return {i, n};
}

std::vector<TableCell> shard_cells(const std::vector<TableCell>& cells, int shard, int num_shards) {
  std::vector<TableCell> out;
  for (const auto& c : cells)
    if (static_cast<int>(c.index % static_cast<std::size_t>(num_shards)) == shard) out.push_back(c);
  return out;
}

std::vector<TableCell> select_cells(const TableConfig& table, const std::vector<TableCell>& cells,
                                    const std::string& list) {
  if (list.empty()) return cells;
  std::vector<std::pair<std::string, std::string>> selectors;
  std::size_t start = 0;
  while (start <= list.size()) {
    std::size_t comma = list.find(',', start);
    std::string item = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty()) {
      auto colon = item.find(':');
      std::string row = colon == std::string::npos ? item : item.substr(0, colon);
      std::string col = colon == std::string::npos ? "*" : item.substr(colon + 1);
      bool row_ok = row == "*" || std::any_of(table.rows.begin(), table.rows.end(),
                                              [&](const TableRow& r) { return r.name == row; });
      bool col_ok = col == "*" || std::any_of(table.columns.begin(), table.columns.end(),
                                              [&](const TableColumn& c) { return c.name == col; });
      LRA_CHECK(row_ok, "--cells: table '{}' has no row '{}'", table.name, row);
      LRA_CHECK(col_ok, "--cells: table '{}' has no column '{}'", table.name, col);
      selectors.emplace_back(row, col);
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  std::vector<TableCell> out;
  for (const auto& c : cells) {
    for (const auto& [row, col] : selectors) {
      if ((row == "*" || row == table.rows[c.row].name) && (col == "*" || col == table.columns[c.column].name)) {
        out.push_back(c);
        break;
      }
    }
  }
  return out;
}

const std::vector<std::string>& reproduce_columns() {
  static const std::vector<std::string> columns{
      "table",   "kind",     "row",      "column", "seed",    "metric",    "ours",
      "theirs",  "delta",    "status",   "reason", "backend", "params",    "task",
      "device",  "dtype",    "batch",    "heads",  "seq_len", "head_dim",  "steps",
      "best_step", "wall_seconds", "tokens_per_s", "peak_bytes", "run_dir", "commit"};
  return columns;
}

const std::vector<std::string>& reproduce_key_columns() {
  static const std::vector<std::string> columns{"table", "row", "column", "seed", "metric"};
  return columns;
}

int run_reproduce(const TableConfig& table, const ReproduceOptions& options) {
  auto cells = shard_cells(table_cells(table), options.shard, options.num_shards);
  cells = select_cells(table, cells, options.cells);

  std::set<std::string> done;
  std::unique_ptr<core::CsvWriter> writer;
  auto read_done = [&] {
    if (!fs::exists(options.out_csv)) return;
    core::CsvTable existing = core::read_csv(options.out_csv);
    LRA_CHECK(existing.columns == reproduce_columns(),
              "{}: not a reproduce CSV (its header differs from lra reproduce's columns)", options.out_csv);
    std::vector<std::size_t> idx;
    for (const auto& col : reproduce_key_columns()) idx.push_back(existing.column(col));
    for (const auto& row : existing.rows)
      done.insert(cell_key(row[idx[0]], row[idx[1]], row[idx[2]], std::stoll(row[idx[3]]), row[idx[4]]));
  };
  if (!options.dry_run) {
    auto parent = fs::path(options.out_csv).parent_path();
    if (!parent.empty()) fs::create_directories(parent);
    writer = std::make_unique<core::CsvWriter>(options.out_csv, reproduce_columns());
  }
  read_done();

  auto missing_metrics = [&](const TableCell& c) {
    std::vector<std::string> missing;
    for (const auto& m : table.metrics)
      if (!done.count(cell_key(table.name, table.rows[c.row].name, table.columns[c.column].name, c.seed, m)))
        missing.push_back(m);
    return missing;
  };

  int todo = 0;
  for (const auto& c : cells)
    if (!missing_metrics(c).empty()) ++todo;
  std::fprintf(stderr, "reproduce %s: %zu cells selected (shard %d/%d), %d to run, %zu already in %s\n",
               table.name.c_str(), cells.size(), options.shard, options.num_shards, todo,
               cells.size() - static_cast<std::size_t>(todo), options.out_csv.c_str());
  if (options.dry_run) {
    for (const auto& c : cells)
      std::printf("%s:%s seed=%lld %s\n", table.rows[c.row].name.c_str(), table.columns[c.column].name.c_str(),
                  static_cast<long long>(c.seed), missing_metrics(c).empty() ? "done" : "todo");
    return 0;
  }

  // Every base config must exist before hours of training start.
  if (table.kind == "accuracy")
    for (const auto& c : cells)
      LRA_CHECK(fs::exists(table.columns[c.column].config), "{}: column '{}': config {} does not exist",
                table.context, table.columns[c.column].name, table.columns[c.column].config);

  int failures = 0, ran = 0;
  const auto start = std::chrono::steady_clock::now();
  for (const auto& c : cells) {
    auto missing = missing_metrics(c);
    if (missing.empty()) continue;
    const TableRow& row = table.rows[c.row];
    const TableColumn& col = table.columns[c.column];
    std::fprintf(stderr, "reproduce %s: cell %s:%s seed %lld (%d/%d)\n", table.name.c_str(), row.name.c_str(),
                 col.name.c_str(), static_cast<long long>(c.seed), ran + 1, todo);
    std::map<std::string, std::string> base{
        {"table", table.name}, {"kind", table.kind},       {"row", row.name},
        {"column", col.name},  {"seed", std::to_string(c.seed)},
        {"backend", row.attention["type"].as<std::string>()},
        {"params", attention::spec_params(row.attention)},   {"commit", core::git_commit()}};
    auto theirs = [&](const std::string& metric) -> std::string {
      auto pc = row.published.find(col.name);
      if (pc == row.published.end()) return "";
      auto pm = pc->second.find(metric);
      return pm == pc->second.end() ? "" : core::csv_number(pm->second);
    };
    auto write = [&](const std::string& metric, double ours, bool have_ours, const std::string& status,
                     const std::string& reason, std::map<std::string, std::string> extra) {
      std::map<std::string, std::string> values;
      for (const auto& column : reproduce_columns()) values[column] = "";
      for (const auto& [k, v] : base) values[k] = v;
      for (auto& [k, v] : extra) values[k] = v;
      values["metric"] = metric;
      values["ours"] = have_ours ? core::csv_number(ours) : "";
      values["theirs"] = theirs(metric);
      values["delta"] = have_ours && !values["theirs"].empty()
                            ? core::csv_number(ours - std::stod(values["theirs"]))
                            : "";
      values["status"] = status;
      values["reason"] = reason;
      writer->write_row(values);
    };
    ++ran;
    try {
      if (table.kind == "accuracy") {
        fs::path run_dir = fs::path(options.runs_dir) / table.name / row.name / col.name /
                           fmt::format("seed{}", c.seed);
        // A cell without a checkpoint starts afresh (a run killed before its first
        // checkpoint leaves a metrics.csv that train() would refuse to overwrite).
        const bool resume = fs::exists(run_dir / "last.ckpt");
        if (!resume) fs::remove_all(run_dir);
        fs::create_directories(run_dir);
        // The row's attention section goes through load_config's section-file override,
        // so it is validated like any config.
        fs::path attention_file = fs::absolute(run_dir / "attention.yaml");
        {
          YAML::Emitter emitter;
          emitter << row.attention;
          std::ofstream out(attention_file);
          out << emitter.c_str() << "\n";
          LRA_CHECK(out.good(), "cannot write {}", attention_file.string());
        }
        std::vector<std::string> overrides = table.set;
        overrides.insert(overrides.end(), col.set.begin(), col.set.end());
        overrides.insert(overrides.end(), row.set.begin(), row.set.end());
        overrides.push_back("attention=" + attention_file.string());
        overrides.push_back(fmt::format("train.seed={}", c.seed));
        overrides.insert(overrides.end(), options.set.begin(), options.set.end());
        YAML::Node config = model::load_config(col.config, overrides);
        model::TrainSummary s = model::train(config, run_dir.string(), resume);
        std::map<std::string, std::string> extra{
            {"task", node_text(config["task"], "name")},
            {"device", node_text(config["train"], "device").empty() ? std::string("cpu") : node_text(config["train"], "device")},
            {"dtype", node_text(config["train"], "dtype")},
            {"batch", node_text(config["train"], "batch")},
            {"heads", node_text(config["model"], "heads")},
            {"seq_len", node_text(config["task"], "max_len")},
            {"steps", std::to_string(s.steps)},
            {"best_step", std::to_string(s.best_step)},
            {"wall_seconds", core::csv_number(s.wall_seconds)},
            {"tokens_per_s", core::csv_number(s.tokens_per_second)},
            {"peak_bytes", std::to_string(s.peak_bytes)},
            {"run_dir", run_dir.string()}};
        if (config["model"] && config["model"]["dim"] && config["model"]["heads"]) {
          int64_t dim = config["model"]["dim"].as<int64_t>(), heads = config["model"]["heads"].as<int64_t>();
          if (heads > 0) extra["head_dim"] = std::to_string(dim / heads);
        }
        write("test_accuracy", as_percent(s.test_accuracy), true, "ok", "", extra);
        std::fprintf(stderr, "reproduce %s: %s:%s test accuracy %.2f%% (published %s)\n", table.name.c_str(),
                     row.name.c_str(), col.name.c_str(), as_percent(s.test_accuracy),
                     theirs("test_accuracy").empty() ? "-" : theirs("test_accuracy").c_str());
      } else {
        YAML::Node sweep;
        for (const auto& entry : table.measure) {
          std::string key = entry.first.as<std::string>();
          if (key == "pass") {
            sweep["passes"] = YAML::Clone(entry.second);
          } else {
            sweep[key] = YAML::Clone(entry.second);
          }
        }
        for (const auto& kv : options.set) {
          auto eq = kv.find('=');
          LRA_CHECK(eq != std::string::npos && kv.rfind("measure.", 0) == 0,
                    "--set for an efficiency table must be measure.KEY=VALUE, got '{}'", kv);
          std::string key = kv.substr(8, eq - 8);
          LRA_CHECK(key != "seq_len" && key != "backends", "--set measure.{}: not settable", key);
          sweep[key == "pass" ? "passes" : key] = YAML::Load(kv.substr(eq + 1));
        }
        if (!sweep["passes"]) sweep["passes"] = "fwd";
        sweep["seq_len"] = col.seq_len;
        YAML::Node backends;
        backends.push_back(row.attention);
        sweep["backends"] = backends;
        SweepConfig config = parse_sweep_config(sweep, table.context + ": measure");
        auto points = expand_grid(config);
        LRA_CHECK(points.size() == 1, "{}: measure must describe one point per cell (one batch, heads, "
                                      "head_dim and pass), got {}", table.context, points.size());
        const SweepPoint& p = points[0];
        SweepResult r = measure_point(p, config);
        std::map<std::string, std::string> extra{
            {"device", std::string(core::device_name(p.device))},
            {"dtype", std::string(core::dtype_name(p.dtype))},
            {"batch", std::to_string(p.batch)},
            {"heads", std::to_string(p.heads)},
            {"seq_len", std::to_string(p.seq_len)},
            {"head_dim", std::to_string(p.head_dim)},
            {"steps", std::to_string(r.reps)}};
        bool timed = r.status == "ok" || r.status == "slow";
        for (const auto& m : missing) {
          double v = m == "memory_mb" ? r.peak_bytes / (1024.0 * 1024.0) : r.time_ms_median;
          write(m, v, timed, r.status, r.reason, extra);
        }
        std::fprintf(stderr, "reproduce %s: %s:%s %s, %.1f MiB, %.3f ms\n", table.name.c_str(), row.name.c_str(),
                     col.name.c_str(), r.status.c_str(), r.peak_bytes / (1024.0 * 1024.0), r.time_ms_median);
      }
    } catch (const Error& e) {
      ++failures;
      std::fprintf(stderr, "reproduce %s: cell %s:%s seed %lld FAILED: %s\n", table.name.c_str(),
                   row.name.c_str(), col.name.c_str(), static_cast<long long>(c.seed), e.what());
    }
  }
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "reproduce %s: ran %d cells in %.1f s, %d failed\n", table.name.c_str(), ran, elapsed,
               failures);
  return failures;
}

std::string markdown_table(const TableConfig& table, const std::string& csv_path) {
  if (!fs::exists(csv_path)) return "";
  core::CsvTable csv = core::read_csv(csv_path);
  const auto ti = csv.column("table"), ri = csv.column("row"), ci = csv.column("column"),
             mi = csv.column("metric"), oi = csv.column("ours"), si = csv.column("status");
  // (row, column, metric) -> values over seeds
  std::map<std::tuple<std::string, std::string, std::string>, std::vector<double>> ours;
  std::map<std::tuple<std::string, std::string, std::string>, std::string> status;
  for (const auto& r : csv.rows) {
    if (r[ti] != table.name) continue;
    auto key = std::make_tuple(r[ri], r[ci], r[mi]);
    if (!r[oi].empty()) ours[key].push_back(std::stod(r[oi]));
    status[key] = r[si];
  }
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / static_cast<double>(v.size());
  };
  std::string md;
  for (const auto& metric : table.metrics) {
    const bool acc = metric == "test_accuracy";
    const char* unit = acc ? "test accuracy %" : (metric == "memory_mb" ? "memory MiB" : "time ms");
    md += fmt::format("\n**{}** — {} (ours / published{})\n\n", table.title.empty() ? table.name : table.title,
                      unit, table.seeds.size() > 1 ? ", ours = mean ± sd over seeds" : "");
    md += "| " + std::string(table.kind == "accuracy" ? "model" : "backend");
    for (const auto& c : table.columns) md += " | " + c.name;
    if (acc) md += " | avg";
    md += " |\n|---";
    for (std::size_t i = 0; i < table.columns.size() + (acc ? 1 : 0); ++i) md += "|---:";
    md += "|\n";
    for (const auto& row : table.rows) {
      md += "| " + row.name;
      double sum_ours = 0, sum_theirs = 0;
      bool all_ours = true, all_theirs = true;
      for (const auto& c : table.columns) {
        auto key = std::make_tuple(row.name, c.name, metric);
        std::string o = "—";
        auto it = ours.find(key);
        if (it != ours.end() && !it->second.empty()) {
          double m = mean(it->second);
          sum_ours += m;
          int prec = acc || metric == "time_ms" ? 2 : (m < 10 ? 2 : (m < 100 ? 1 : 0));
          o = fmt::format("{:.{}f}", m, prec);
          if (it->second.size() > 1) {
            double var = 0;
            for (double x : it->second) var += (x - m) * (x - m);
            o += fmt::format(" ± {:.{}f}", std::sqrt(var / static_cast<double>(it->second.size() - 1)), prec);
          }
        } else {
          all_ours = false;
          auto st = status.find(key);
          if (st != status.end()) o = st->second;
        }
        std::string p = "—";
        auto pc = row.published.find(c.name);
        if (pc != row.published.end() && pc->second.count(metric)) {
          double v = pc->second.at(metric);
          sum_theirs += v;
          p = fmt::format("{:g}", v);
        } else {
          all_theirs = false;
        }
        md += " | " + o + " / " + p;
      }
      if (acc) {
        auto n = static_cast<double>(table.columns.size());
        md += " | " + (all_ours ? fmt::format("{:.2f}", sum_ours / n) : std::string("—")) + " / " +
              (all_theirs ? fmt::format("{:.2f}", sum_theirs / n) : std::string("—"));
      }
      md += " |\n";
    }
  }
  if (!table.source.empty()) md += "\nPublished: " + table.source + "\n";
  return md;
}

void merge_csvs(const std::string& out, const std::vector<std::string>& inputs, bool force) {
  LRA_CHECK(!inputs.empty(), "lra merge: no input CSVs");
  for (const auto& in : inputs)
    LRA_CHECK(fs::weakly_canonical(in) != fs::weakly_canonical(out),
              "lra merge: output {} is also an input", out);
  LRA_CHECK(force || !fs::exists(out), "lra merge: {} exists (use --force to overwrite)", out);
  std::vector<core::CsvTable> tables;
  for (const auto& in : inputs) {
    LRA_CHECK(fs::exists(in), "lra merge: {} does not exist", in);
    tables.push_back(core::read_csv(in));
    LRA_CHECK(!tables.back().columns.empty(), "lra merge: {} is empty (no header)", in);
  }
  const auto& columns = tables[0].columns;
  for (std::size_t i = 1; i < tables.size(); ++i) {
    if (tables[i].columns != columns) {
      std::string detail;
      for (std::size_t c = 0; c < std::max(columns.size(), tables[i].columns.size()); ++c) {
        std::string a = c < columns.size() ? columns[c] : "(none)";
        std::string b = c < tables[i].columns.size() ? tables[i].columns[c] : "(none)";
        if (a != b) {
          detail = fmt::format("column {}: '{}' vs '{}'", c + 1, a, b);
          break;
        }
      }
      fail("lra merge: schema mismatch between {} and {} ({})", inputs[0], inputs[i], detail);
    }
  }
  // The columns that identify a measurement: the known schemas' keys, else the whole row.
  std::vector<std::string> key_columns;
  auto has_all = [&](const std::vector<std::string>& wanted) {
    return std::all_of(wanted.begin(), wanted.end(), [&](const std::string& w) {
      return std::find(columns.begin(), columns.end(), w) != columns.end();
    });
  };
  if (columns == reproduce_columns()) {
    key_columns = reproduce_key_columns();
  } else if (columns == sweep_columns()) {
    key_columns = sweep_key_columns();
  } else if (has_all({"backend", "params", "device", "dtype", "batch", "heads", "seq_len", "head_dim", "seed"})) {
    key_columns = {"backend", "params", "device", "dtype", "batch", "heads", "seq_len", "head_dim", "seed"};
    if (has_all({"pass"})) key_columns.push_back("pass");
  } else {
    key_columns = columns;
  }
  std::vector<std::size_t> idx;
  for (const auto& k : key_columns) idx.push_back(tables[0].column(k));
  std::map<std::string, std::string> seen;  // key -> file
  for (std::size_t i = 0; i < tables.size(); ++i) {
    for (const auto& row : tables[i].rows) {
      std::string key;
      for (std::size_t j = 0; j < idx.size(); ++j) key += (j ? "," : "") + row[idx[j]];
      auto [it, inserted] = seen.emplace(key, inputs[i]);
      if (!inserted) {
        std::string named;
        for (std::size_t j = 0; j < idx.size(); ++j)
          named += (j ? ", " : "") + key_columns[j] + "=" + row[idx[j]];
        fail("lra merge: duplicate row ({}) in {} and {}", named, it->second, inputs[i]);
      }
    }
  }
  std::string tmp = out + ".tmp";
  fs::remove(tmp);
  {
    core::CsvWriter writer(tmp, columns);
    for (const auto& t : tables)
      for (const auto& row : t.rows) writer.write_row(row);
  }
  fs::rename(tmp, out);
}

}  // namespace lra::harness
