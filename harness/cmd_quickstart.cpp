// `lra quickstart [CONFIG]`: the main job in one command (README command (1) runs it):
// a small ListOps set, a scaling sweep of every backend, an approximation sweep, a short
// training of softmax vs Nyström, CSVs under results/quickstart/ and summary tables.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "attention/attention.h"
#include "core/csv.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/version.h"
#include "harness/commands.h"
#include "harness/sweep.h"
#include "model/train.h"
#include "tasks/dataset.h"

namespace lra::harness {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void write_yaml(const fs::path& path, const YAML::Node& node) {
  YAML::Emitter emitter;
  emitter << node;
  std::ofstream out(path);
  out << emitter.c_str() << "\n";
  LRA_CHECK(out.good(), "cannot write {}", path.string());
}

void banner(const std::string& text) { std::printf("\n== %s\n", text.c_str()); }

std::string fmt_ms(double ms) { return ms >= 100 ? fmt::format("{:.0f} ms", ms) : fmt::format("{:.1f} ms", ms); }
std::string fmt_mib(double bytes) { return fmt::format("{:.0f} MiB", bytes / (1024.0 * 1024.0)); }

std::string backend_label(const std::string& backend, const std::string& params) {
  return params.empty() ? backend : backend + " (" + params + ")";
}

// Markdown table of one pass of a sweep CSV: time and memory per backend and N, with the
// ratio to exact softmax at the same point.
std::string sweep_summary(const std::string& csv_path, const std::string& pass) {
  std::string md;
  core::CsvTable t = core::read_csv(csv_path);
  const auto bi = t.column("backend"), pi = t.column("params"), ni = t.column("seq_len"),
             si = t.column("status"), mi = t.column("time_ms_median"), ki = t.column("peak_bytes"),
             ai = t.column("pass");
  std::vector<std::string> order;
  std::set<int64_t> seqs;
  std::map<std::pair<std::string, int64_t>, std::vector<std::string>> rows;
  for (const auto& r : t.rows) {
    if (r[ai] != pass) continue;
    std::string label = backend_label(r[bi], r[pi]);
    if (std::find(order.begin(), order.end(), label) == order.end()) order.push_back(label);
    int64_t n = std::stoll(r[ni]);
    seqs.insert(n);
    rows[{label, n}] = r;
  }
  if (order.empty()) return md;
  md += fmt::format("\n{}: median time per call, peak memory beyond the inputs "
                  "(×: softmax time ÷ this time)\n\n| backend |", pass);
  for (int64_t n : seqs) md += fmt::format(" N={} |", n);
  md += "\n|---|";
  for (std::size_t i = 0; i < seqs.size(); ++i) md += "---:|";
  md += "\n";
  for (const auto& label : order) {
    md += fmt::format("| {} |", label);
    for (int64_t n : seqs) {
      auto it = rows.find({label, n});
      if (it == rows.end()) {
        md += " |";
        continue;
      }
      const auto& r = it->second;
      if (r[si] != "ok" && r[si] != "slow") {
        md += fmt::format(" {} |", r[si]);
        continue;
      }
      double ms = std::stod(r[mi]);
      std::string cell = fmt_ms(ms) + ", " + fmt_mib(std::stod(r[ki]));
      auto ref = rows.find({"softmax", n});
      if (label != "softmax" && ref != rows.end() && (ref->second[si] == "ok" || ref->second[si] == "slow"))
        cell += fmt::format(" ({:.1f}×)", std::stod(ref->second[mi]) / ms);
      md += fmt::format(" {} |", cell);
    }
    md += "\n";
  }
  return md;
}

std::string approx_summary(const std::string& csv_path) {
  std::string md;
  core::CsvTable t = core::read_csv(csv_path);
  const auto bi = t.column("backend"), pi = t.column("params"), ni = t.column("seq_len"),
             ei = t.column("error_rel_fro");
  std::vector<std::string> order;
  std::set<int64_t> seqs;
  std::map<std::pair<std::string, int64_t>, std::vector<double>> errors;
  for (const auto& r : t.rows) {
    if (r[ei].empty()) continue;
    std::string label = backend_label(r[bi], r[pi]);
    if (std::find(order.begin(), order.end(), label) == order.end()) order.push_back(label);
    int64_t n = std::stoll(r[ni]);
    seqs.insert(n);
    errors[{label, n}].push_back(std::stod(r[ei]));
  }
  md += "\nrelative Frobenius error of the output vs exact softmax (median over seeds)\n\n| backend |";
  for (int64_t n : seqs) md += fmt::format(" N={} |", n);
  md += "\n|---|";
  for (std::size_t i = 0; i < seqs.size(); ++i) md += "---:|";
  md += "\n";
  for (const auto& label : order) {
    md += fmt::format("| {} |", label);
    for (int64_t n : seqs) {
      auto it = errors.find({label, n});
      if (it == errors.end()) {
        md += " |";
        continue;
      }
      md += fmt::format(" {:.3g} |", quantile(it->second, 0.5));
    }
    md += "\n";
  }
  return md;
}

int run_quickstart(const std::vector<std::string>& args) {
  ParsedArgs parsed = parse_args("quickstart", args, {"--out"}, {}, 1);
  const std::string config_path = parsed.positionals.empty() ? "configs/quickstart.yaml" : parsed.positionals[0];
  YAML::Node root;
  try {
    root = YAML::LoadFile(config_path);
  } catch (const YAML::BadFile&) {
    fail("cannot read quickstart config '{}' (run from the repository root or pass its path)", config_path);
  }
  LRA_CHECK(root.IsMap(), "{}: must be a mapping", config_path);
  for (const auto& entry : root) {
    std::string key = entry.first.as<std::string>();
    LRA_CHECK(key == "out" || key == "data" || key == "sweep" || key == "approx" || key == "train",
              "{}: unknown key '{}' (known: out, data, sweep, approx, train)", config_path, key);
  }
  const fs::path out = parsed.get("--out", root["out"] ? root["out"].as<std::string>() : "results/quickstart");
  fs::create_directories(out);
  const auto start = Clock::now();
  std::vector<std::pair<std::string, double>> step_times;
  std::string report;  // the summary tables, printed together at the end
  std::printf("lra quickstart — %s, commit %s, %d CPU threads; results in %s/\n", config_path.c_str(),
              core::git_commit().c_str(), core::num_threads(), out.string().c_str());

  // 1. Data.
  std::string data_dir;
  {
    auto t0 = Clock::now();
    const YAML::Node d = root["data"];
    LRA_CHECK(d && d.IsMap(), "{}: missing section 'data'", config_path);
    for (const auto& entry : d) {
      std::string key = entry.first.as<std::string>();
      LRA_CHECK(key == "task" || key == "dir" || key == "seed" || key == "options",
                "{}: unknown key data.{} (known: task, dir, seed, options)", config_path, key);
    }
    const std::string task = d["task"].as<std::string>();
    data_dir = d["dir"].as<std::string>();
    auto gen = tasks::generators().find(task);
    LRA_CHECK(gen != tasks::generators().end(), "{}: data.task '{}' has no generator", config_path, task);
    std::map<std::string, std::string> options;
    if (d["options"]) {
      for (const auto& entry : d["options"]) {
        std::string key = entry.first.as<std::string>();
        const auto& names = gen->second.option_names;
        LRA_CHECK(std::find(names.begin(), names.end(), key) != names.end(),
                  "{}: data.options.{} is not an option of the {} generator", config_path, key, task);
        options[key] = entry.second.as<std::string>();
      }
    }
    const uint64_t seed = d["seed"] ? d["seed"].as<uint64_t>() : 0;
    banner(fmt::format("1/4 data: {} ({})", task, data_dir));
    const fs::path stamp = fs::path(data_dir) / ".quickstart-done";
    if (fs::exists(stamp)) {
      std::printf("already generated (delete %s to regenerate)\n", data_dir.c_str());
    } else {
      gen->second.run(data_dir, seed, options);
      std::ofstream(stamp) << "seed " << seed << "\n";
    }
    step_times.emplace_back("data", since(t0));
  }

  // 2. Scaling sweep.
  {
    auto t0 = Clock::now();
    LRA_CHECK(root["sweep"], "{}: missing section 'sweep'", config_path);
    SweepConfig sweep = parse_sweep_config(root["sweep"], config_path + ": sweep");
    write_yaml(out / "sweep.yaml", root["sweep"]);
    const std::string csv = (out / "scaling.csv").string();
    banner(fmt::format("2/4 scaling sweep: {} backends x {} lengths x {} passes -> {}", sweep.backends.size(),
                       sweep.seq_len.size(), sweep.passes.size(), csv));
    int errors = run_sweep(sweep, csv);
    LRA_CHECK(errors == 0, "quickstart: {} sweep points failed (status 'error' in {})", errors, csv);
    report += fmt::format("\n### Scaling ({}, B={}, H={}, D={}; {})\n", core::device_name(sweep.device),
                          sweep.batch[0], sweep.heads[0], sweep.head_dim[0], csv);
    for (const auto& pass : sweep.passes) report += sweep_summary(csv, pass);
    step_times.emplace_back("scaling sweep", since(t0));
  }

  // 3. Approximation sweep (the registered `approx` command with the config's section).
  {
    auto t0 = Clock::now();
    LRA_CHECK(root["approx"], "{}: missing section 'approx'", config_path);
    const auto& commands = command_table();
    auto approx = commands.find("approx");
    banner("3/4 approximation error vs exact softmax");
    if (approx == commands.end()) {
      std::printf("skipped: this build has no `lra approx`\n");
      report += "\n### Approximation: skipped (no `lra approx` in this build)\n";
    } else {
      const fs::path config = out / "approx.yaml";
      write_yaml(config, root["approx"]);
      const fs::path csv = out / "approx.csv";
      fs::remove(csv);  // small and quick: always measured afresh
      int rc = approx->second.run({config.string(), "--out", csv.string()});
      LRA_CHECK(rc == 0, "quickstart: lra approx {} failed (status {})", config.string(), rc);
      report += fmt::format("\n### Approximation ({})\n", csv.string());
      report += approx_summary(csv.string());
    }
    step_times.emplace_back("approximation sweep", since(t0));
  }

  // 4. Short training runs.
  {
    auto t0 = Clock::now();
    const YAML::Node tr = root["train"];
    LRA_CHECK(tr && tr.IsMap() && tr["config"] && tr["runs"] && tr["runs"].IsSequence(),
              "{}: section 'train' needs 'config' (task, model, train) and a list 'runs'", config_path);
    for (const auto& entry : tr) {
      std::string key = entry.first.as<std::string>();
      LRA_CHECK(key == "config" || key == "runs", "{}: unknown key train.{} (known: config, runs)", config_path, key);
    }
    banner(fmt::format("4/4 training: {} runs on {}", tr["runs"].size(), data_dir));
    struct Done {
      std::string name;
      model::TrainSummary summary;
    };
    std::vector<Done> done;
    core::CsvWriter summary_csv((out / "training.csv").string() + ".tmp",
                                {"run", "backend", "params", "steps", "best_step", "best_val_accuracy",
                                 "test_accuracy", "wall_seconds", "tokens_per_second", "peak_bytes", "run_dir",
                                 "commit"});
    for (const auto& run : tr["runs"]) {
      LRA_CHECK(run.IsMap() && run["name"] && run["attention"], "{}: each train.runs entry needs name and attention",
                config_path);
      const std::string name = run["name"].as<std::string>();
      YAML::Node config = YAML::Clone(tr["config"]);
      config["task"]["data_dir"] = data_dir;
      config["attention"] = YAML::Clone(run["attention"]);
      const fs::path run_dir = out / "runs" / name;
      fs::remove_all(run_dir);  // a short run: always trained afresh
      fs::create_directories(run_dir);
      const fs::path config_file = out / ("train_" + name + ".yaml");
      write_yaml(config_file, config);
      std::printf("-- %s\n", name.c_str());
      std::fflush(stdout);
      YAML::Node resolved = model::load_config(config_file.string(), {});
      model::TrainSummary s = model::train(resolved, run_dir.string(), false);
      done.push_back({name, s});
      summary_csv.write_row({name, run["attention"]["type"].as<std::string>(), attention::spec_params(run["attention"]),
                             std::to_string(s.steps), std::to_string(s.best_step),
                             core::csv_number(s.best_val_accuracy), core::csv_number(s.test_accuracy),
                             core::csv_number(s.wall_seconds), core::csv_number(s.tokens_per_second),
                             std::to_string(s.peak_bytes), run_dir.string(), core::git_commit()});
    }
    fs::rename((out / "training.csv").string() + ".tmp", out / "training.csv");
    report += fmt::format("\n### Training (ListOps, {} runs in {}/runs/)\n\n", done.size(), out.string());
    report += "| run | steps | best val acc (step) | test acc | tokens/s | peak memory | wall |\n"
              "|---|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& d : done) {
      const auto& s = d.summary;
      report += fmt::format("| {} | {} | {:.1f}% ({}) | {:.1f}% | {:.0f} | {} | {:.0f} s |\n", d.name, s.steps,
                            100.0 * s.best_val_accuracy, s.best_step, 100.0 * s.test_accuracy,
                            s.tokens_per_second, fmt_mib(static_cast<double>(s.peak_bytes)), s.wall_seconds);
    }
    if (done.size() >= 2 && done[1].summary.tokens_per_second > 0 && done[0].summary.tokens_per_second > 0)
      report += fmt::format("\n{} trains at {:.2f}× the tokens/s of {}, with {:.2f}× its peak memory.\n",
                            done[1].name, done[1].summary.tokens_per_second / done[0].summary.tokens_per_second,
                            done[0].name,
                            static_cast<double>(done[1].summary.peak_bytes) /
                                static_cast<double>(std::max<std::size_t>(done[0].summary.peak_bytes, 1)));
    step_times.emplace_back("training", since(t0));
  }

  banner("summary");
  std::printf("%s", report.c_str());
  banner("timing");
  for (const auto& [step, seconds] : step_times) std::printf("%-22s %7.1f s\n", step.c_str(), seconds);
  std::printf("%-22s %7.1f s\n", "total", since(start));
  std::printf("\nCSVs: %s/{scaling,approx,training}.csv, runs in %s/runs/\n", out.string().c_str(),
              out.string().c_str());
  return 0;
}

}  // namespace

LRA_REGISTER_COMMAND(Command{
    "quickstart", "the main job: data, scaling sweep, approximation, short training, summaries",
    "usage: lra quickstart [CONFIG] [--out DIR]\n\n"
    "Runs the steps of CONFIG (default configs/quickstart.yaml): generates a small ListOps\n"
    "set (data), times every backend (sweep -> DIR/scaling.csv, resumable), measures the\n"
    "approximation error against exact softmax (approx -> DIR/approx.csv), trains each of\n"
    "train.runs briefly (DIR/runs/<name>/, summary DIR/training.csv) and prints the summary\n"
    "tables and the time each step took. DIR defaults to the config's `out`\n"
    "(results/quickstart). scripts/quickstart.sh runs it and draws the plots beside the CSVs.",
    run_quickstart});

}  // namespace lra::harness
