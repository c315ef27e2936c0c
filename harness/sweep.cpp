#include "harness/sweep.h"

#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <new>
#include <set>
#include <sstream>

#include "attention/attention.h"
#include "core/allocator.h"
#include "core/csv.h"
#include "core/cuda_runtime_info.h"
#include "core/device_timer.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "core/version.h"

namespace lra::harness {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::vector<int64_t> int_list(const YAML::Node& node, const std::string& key,
                              const std::string& context) {
  std::vector<int64_t> out;
  auto one = [&](const YAML::Node& item) {
    try {
      int64_t v = item.as<int64_t>();
      LRA_CHECK(v > 0, "{}: {} values must be positive, got {}", context, key, v);
      out.push_back(v);
    } catch (const YAML::Exception&) {
      fail("{}: {} must be a positive integer or a list of them, got '{}'", context, key,
           item.IsScalar() ? item.Scalar() : std::string("(non-scalar)"));
    }
  };
  if (node.IsSequence()) {
    for (const auto& item : node) one(item);
  } else {
    one(node);
  }
  LRA_CHECK(!out.empty(), "{}: {} is an empty list", context, key);
  return out;
}

// Current and peak resident set size of this process (Linux /proc), in bytes.
struct Rss {
  double current = 0, peak = 0;
};
Rss read_rss() {
  Rss rss;
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    auto kib = [&](const char* field) {
      std::istringstream s(line.substr(std::string(field).size()));
      double v = 0;
      s >> v;
      return v * 1024.0;
    };
    if (line.rfind("VmRSS:", 0) == 0) rss.current = kib("VmRSS:");
    if (line.rfind("VmHWM:", 0) == 0) rss.peak = kib("VmHWM:");
  }
  if (rss.peak == 0) {  // no /proc: fall back to getrusage (peak over the process's life)
    struct rusage usage {};
    if (getrusage(RUSAGE_SELF, &usage) == 0) rss.peak = static_cast<double>(usage.ru_maxrss) * 1024.0;
  }
  return rss;
}
// Resets the kernel's peak-RSS mark (VmHWM) to the current RSS; false where unsupported.
bool reset_peak_rss() {
  std::FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (!f) return false;
  bool ok = std::fputs("5", f) >= 0;
  ok = (std::fclose(f) == 0) && ok;
  return ok;
}

bool backward_pass(const std::string& pass) { return pass == "fwd+bwd"; }

double analytic_bytes(const attention::Cost& cost, const std::string& pass) {
  // cost() gives the extra bytes of each call at its peak; during the backward the
  // forward's saved tensors and output are still live, so fwd+bwd needs both.
  return backward_pass(pass) ? cost.forward_bytes + cost.backward_bytes : cost.forward_bytes;
}

// A key mask holds f32 or f64: bf16 inputs come with an f32 mask.
core::DType mask_dtype(const SweepPoint& p) {
  return p.dtype == core::DType::bf16 ? core::DType::f32 : p.dtype;
}

double input_bytes(const SweepPoint& p) {
  double qkv = 3.0 * static_cast<double>(p.batch * p.heads * p.seq_len * p.head_dim);
  double mask = static_cast<double>(p.batch * p.seq_len);
  double dout = backward_pass(p.pass) ? static_cast<double>(p.batch * p.heads * p.seq_len * p.head_dim) : 0;
  return (qkv + dout) * static_cast<double>(core::dtype_size(p.dtype)) +
         mask * static_cast<double>(core::dtype_size(mask_dtype(p)));
}

attention::AttnShape shape_of(const SweepPoint& p) {
  return attention::AttnShape{p.batch, p.heads, p.seq_len, p.head_dim};
}

attention::AttentionOptions options_of(const SweepPoint& p, const SweepConfig& c) {
  attention::AttentionOptions o;
  o.seed = c.seed;
  o.dtype = p.dtype;
  o.device = p.device;
  return o;
}

// A CUDA sweep needs a usable device; the config itself parses anywhere.
void require_device(const SweepConfig& c) {
  if (c.device != core::Device::cuda) return;
  LRA_CHECK(core::cuda_device_count() > 0, "{}: device cuda: {}", c.context,
            core::cuda_unavailable_reason());
}

// The CSV's dtype: f32, f64, or tf32 for f32 tensors with TF32 products.
std::string dtype_label(const SweepPoint& p) {
  return std::string(p.precision == core::MatmulPrecision::tf32 ? "tf32" : core::dtype_name(p.dtype));
}

std::string series_key(const SweepPoint& p) {
  return fmt::format("{}|{}|{}|{}|{}|{}|{}", p.backend, p.params, p.pass, p.batch, p.heads,
                     p.head_dim, dtype_label(p));
}

}  // namespace

std::string format_bytes(double b) {
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
  return fmt::format("{:.1f} MiB", b / (1024.0 * 1024));
}

std::string sweep_kind(const YAML::Node& root, const std::string& context) {
  LRA_CHECK(root.IsMap(), "{}: a sweep config must be a mapping", context);
  if (!root["kind"]) return "attention";
  auto kind = config_scalar<std::string>(root["kind"], "kind", context, "attention or train_step");
  LRA_CHECK(kind == "attention" || kind == "train_step",
            "{}: kind: unknown sweep kind '{}' (known: attention, train_step)", context, kind);
  return kind;
}

YAML::Node load_sweep_yaml(const std::string& path) {
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    fail("cannot read sweep config '{}'", path);
  } catch (const YAML::Exception& e) {
    fail("{}: YAML error: {}", path, e.what());
  }
}

std::map<std::string, std::string> existing_rows(const std::string& csv,
                                                 const std::vector<std::string>& key_columns) {
  std::map<std::string, std::string> done;
  core::CsvTable existing = core::read_csv(csv);
  std::vector<std::size_t> idx;
  for (const auto& col : key_columns) idx.push_back(existing.column(col));
  std::size_t status_col = existing.column("status");
  for (const auto& row : existing.rows) {
    std::string key;
    for (std::size_t i = 0; i < idx.size(); ++i) key += (i ? "|" : "") + row[idx[i]];
    done[key] = row[status_col];
  }
  return done;
}

bool is_device_oom(const Error& error) {
  return std::string(error.what()).find("cudaErrorMemoryAllocation") != std::string::npos;
}

double quantile(std::vector<double> values, double q) {
  LRA_CHECK(!values.empty(), "quantile of an empty list");
  std::sort(values.begin(), values.end());
  double pos = q * static_cast<double>(values.size() - 1);
  auto lo = static_cast<std::size_t>(std::floor(pos));
  std::size_t hi = std::min(lo + 1, values.size() - 1);
  double frac = pos - static_cast<double>(lo);
  return values[lo] + (values[hi] - values[lo]) * frac;
}

double parse_bytes(const YAML::Node& node, const std::string& what) {
  LRA_CHECK(node.IsScalar(), "{} must be a byte count like 24GiB", what);
  std::string text = node.Scalar();
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    fail("{}: '{}' is not a byte count (e.g. 24GiB, 512MiB, 1e9)", what, text);
  }
  std::string unit = text.substr(used);
  unit.erase(std::remove(unit.begin(), unit.end(), ' '), unit.end());
  static const std::map<std::string, double> units{
      {"", 1.0},         {"B", 1.0},           {"KiB", 1024.0},       {"MiB", 1048576.0},
      {"GiB", 1073741824.0}, {"TiB", 1099511627776.0}, {"KB", 1e3},  {"MB", 1e6},
      {"GB", 1e9},       {"TB", 1e12}};
  auto it = units.find(unit);
  LRA_CHECK(it != units.end(), "{}: unknown unit '{}' in '{}' (use B, KiB, MiB, GiB, KB, MB, GB)",
            what, unit, text);
  LRA_CHECK(value >= 0, "{}: negative byte count '{}'", what, text);
  return value * it->second;
}

SweepConfig parse_sweep_config(const YAML::Node& node, const std::string& context) {
  LRA_CHECK(node.IsMap(), "{}: a sweep config must be a mapping", context);
  SweepConfig c;
  c.context = context;
  bool have_backends = false;
  for (const auto& entry : node) {
    std::string key = entry.first.as<std::string>();
    const YAML::Node& v = entry.second;
    if (key == "device") {
      c.device = core::parse_device(config_scalar<std::string>(v, key, context, "cpu or cuda"));
    } else if (key == "dtype") {
      const auto name = config_scalar<std::string>(v, key, context, "f32, f64, tf32 or bf16");
      if (name == "tf32") {  // f32 storage, TF32 products
        c.dtype = core::DType::f32;
        c.precision = core::MatmulPrecision::tf32;
      } else {
        LRA_CHECK(name == "f32" || name == "f64" || name == "bf16",
                  "{}: dtype must be f32, f64, tf32 or bf16, got '{}'", context, name);
        c.dtype = core::parse_dtype(name);
        c.precision = core::MatmulPrecision::fp32;
      }
    } else if (key == "batch") {
      c.batch = int_list(v, key, context);
    } else if (key == "heads") {
      c.heads = int_list(v, key, context);
    } else if (key == "head_dim") {
      c.head_dim = int_list(v, key, context);
    } else if (key == "seq_len") {
      c.seq_len = int_list(v, key, context);
    } else if (key == "passes") {
      c.passes.clear();
      std::vector<YAML::Node> items;
      if (v.IsSequence()) {
        for (const auto& item : v) items.push_back(item);
      } else {
        items.push_back(v);
      }
      for (const auto& item : items) {
        auto pass = config_scalar<std::string>(item, key, context, "fwd or fwd+bwd");
        LRA_CHECK(pass == "fwd" || pass == "fwd+bwd", "{}: passes: unknown pass '{}' (fwd, fwd+bwd)",
                  context, pass);
        c.passes.push_back(pass);
      }
      LRA_CHECK(!c.passes.empty(), "{}: passes is an empty list", context);
    } else if (key == "backends") {
      have_backends = true;
      if (v.IsScalar() && v.Scalar() == "all") {
        for (const auto& [name, info] : attention::backends()) {
          YAML::Node spec;
          spec["type"] = name;
          c.backends.push_back(spec);
        }
        LRA_CHECK(!c.backends.empty(), "{}: backends: all, but this build has no backend", context);
      } else {
        LRA_CHECK(v.IsSequence(), "{}: backends must be a list of attention specs or 'all'", context);
        for (const auto& item : v) {
          YAML::Node spec;
          if (item.IsScalar()) {
            spec["type"] = item.Scalar();
          } else {
            LRA_CHECK(item.IsMap() && item["type"], "{}: each backends entry needs a 'type'", context);
            spec = YAML::Clone(item);
          }
          c.backends.push_back(spec);
        }
      }
    } else if (key == "warmup") {
      c.warmup = config_scalar<int>(v, key, context, "an integer");
      LRA_CHECK(c.warmup >= 0, "{}: warmup must be >= 0", context);
    } else if (key == "min_reps") {
      c.min_reps = config_scalar<int>(v, key, context, "an integer");
      LRA_CHECK(c.min_reps >= 1, "{}: min_reps must be >= 1", context);
    } else if (key == "max_reps") {
      c.max_reps = config_scalar<int>(v, key, context, "an integer");
      LRA_CHECK(c.max_reps >= 1, "{}: max_reps must be >= 1", context);
    } else if (key == "min_seconds") {
      c.min_seconds = config_scalar<double>(v, key, context, "a number");
      LRA_CHECK(c.min_seconds >= 0, "{}: min_seconds must be >= 0", context);
    } else if (key == "max_call_seconds") {
      c.max_call_seconds = config_scalar<double>(v, key, context, "a number");
      LRA_CHECK(c.max_call_seconds >= 0, "{}: max_call_seconds must be >= 0", context);
    } else if (key == "memory_limit") {
      c.memory_limit = parse_bytes(v, context + ": memory_limit");
    } else if (key == "seed") {
      c.seed = config_scalar<uint64_t>(v, key, context, "a non-negative integer");
    } else if (key == "kind") {
      LRA_CHECK(sweep_kind(node, context) == "attention",
                "{}: kind: {} is not an attention sweep", context, v.Scalar());
    } else {
      fail("{}: unknown sweep key '{}' (known: kind, device, dtype, batch, heads, head_dim, seq_len, "
           "passes, backends, warmup, min_reps, max_reps, min_seconds, max_call_seconds, "
           "memory_limit, seed)",
           context, key);
    }
  }
  LRA_CHECK(have_backends && !c.backends.empty(), "{}: no backends listed", context);
  LRA_CHECK(c.precision == core::MatmulPrecision::fp32 || c.device == core::Device::cuda,
            "{}: dtype: tf32 applies to device cuda only (CPU products are exact fp32)", context);
  LRA_CHECK(c.max_reps >= c.min_reps, "{}: max_reps ({}) < min_reps ({})", context, c.max_reps,
            c.min_reps);
  return c;
}

std::vector<SweepPoint> expand_grid(const SweepConfig& c) {
  std::vector<SweepPoint> points;
  for (const auto& spec : c.backends) {
    for (const auto& pass : c.passes)
      for (int64_t b : c.batch)
        for (int64_t h : c.heads)
          for (int64_t d : c.head_dim)
            for (int64_t n : c.seq_len) {
              SweepPoint p;
              p.spec = spec;
              p.backend = spec["type"].as<std::string>();
              p.params = attention::spec_params(spec);
              p.device = c.device;
              p.dtype = c.dtype;
              p.precision = c.precision;
              p.batch = b;
              p.heads = h;
              p.head_dim = d;
              p.seq_len = n;
              p.pass = pass;
              points.push_back(p);
            }
  }
  return points;
}

SweepResult analyse_point(const SweepPoint& point, const SweepConfig& config) {
  SweepResult r;
  auto attn = attention::make_attention(point.spec, shape_of(point), options_of(point, config),
                                        config.context);
  attention::Cost cost = attn->cost(shape_of(point));
  r.analytic_bytes = analytic_bytes(cost, point.pass);
  r.flops = backward_pass(point.pass) ? cost.forward_flops + cost.backward_flops : cost.forward_flops;
  double need = input_bytes(point) + r.analytic_bytes;
  if (config.memory_limit > 0 && need > config.memory_limit) {
    r.status = "oom";
    r.reason = fmt::format("needs {} (inputs {} + analytic {}) > memory_limit {}", format_bytes(need),
                           format_bytes(input_bytes(point)), format_bytes(r.analytic_bytes),
                           format_bytes(config.memory_limit));
  }
  return r;
}

SweepResult measure_point(const SweepPoint& point, const SweepConfig& config) {
  SweepResult r = analyse_point(point, config);
  if (r.status != "ok") return r;
  require_device(config);
  core::Allocator& alloc = core::allocator_for(point.device);
  const attention::AttnShape shape = shape_of(point);
  auto attn = attention::make_attention(point.spec, shape, options_of(point, config), config.context);
  const bool bwd = backward_pass(point.pass);
  attn->set_training(bwd);

  core::Rng rng(config.seed);
  core::Shape qkv_shape{point.batch, point.heads, point.seq_len, point.head_dim};
  core::Tensor q = core::Tensor::empty(qkv_shape, point.dtype, point.device);
  core::Tensor k = core::Tensor::empty(qkv_shape, point.dtype, point.device);
  core::Tensor v = core::Tensor::empty(qkv_shape, point.dtype, point.device);
  rng.normal(q);
  rng.normal(k);
  rng.normal(v);
  // All-ones key mask, as the anchor measurements use.
  core::Tensor mask = core::Tensor::full(core::Shape{point.batch, point.seq_len}, 1.0,
                                         mask_dtype(point), point.device);
  core::Tensor d_out;
  if (bwd) {
    d_out = core::Tensor::empty(qkv_shape, point.dtype, point.device);
    rng.normal(d_out);
  }

  auto call = [&] {
    attention::Context saved;
    core::Tensor out;
    attn->forward(q, k, v, mask, out, saved);
    if (bwd) {
      core::Tensor d_q, d_k, d_v;
      attn->backward(d_out, saved, d_q, d_k, d_v);
    }
  };

  // Each call is timed by the device timer: the steady clock on the CPU, CUDA events
  // around the call on the GPU (waiting for its kernels, so nothing overlaps the next).
  core::DeviceTimer timer(point.device);
  auto timed_call_ms = [&] {
    timer.start();
    call();
    return timer.stop_ms();
  };
  core::device_synchronize(point.device);  // input initialisation is not part of a call

  // Everything that exists now (inputs, output gradient, parameters) is excluded.
  const double live_before = static_cast<double>(alloc.live_bytes());
  const bool on_cpu = point.device == core::Device::cpu;
  const bool rss_reset = on_cpu && reset_peak_rss();
  const Rss rss_before = read_rss();
  alloc.reset_peak();

  std::vector<double> times_ms;
  for (int i = 0; i < config.warmup; ++i) {
    double s = timed_call_ms() * 1e-3;
    if (i == 0 && config.max_call_seconds > 0 && s > config.max_call_seconds) {
      times_ms.push_back(s * 1e3);
      r.status = "slow";
      r.reason = fmt::format("one call took {:.2f} s > max_call_seconds {}; timed once", s,
                             config.max_call_seconds);
      break;
    }
  }
  if (r.status == "ok") {
    auto begin = Clock::now();
    while (static_cast<int>(times_ms.size()) < config.max_reps &&
           (static_cast<int>(times_ms.size()) < config.min_reps ||
            seconds_since(begin) < config.min_seconds)) {
      times_ms.push_back(timed_call_ms());
    }
  }
  r.reps = static_cast<int>(times_ms.size());
  r.time_ms_median = quantile(times_ms, 0.5);
  r.time_ms_p10 = quantile(times_ms, 0.1);
  r.time_ms_p90 = quantile(times_ms, 0.9);
  r.peak_bytes = static_cast<double>(alloc.peak_bytes()) - live_before;
  if (on_cpu) {
    Rss after = read_rss();
    // Without the reset, VmHWM is the process's lifetime peak: report it only if the
    // call raised it above the RSS before the call.
    r.peak_rss_bytes = std::max(0.0, after.peak - rss_before.current);
    if (!rss_reset && after.peak <= rss_before.peak) r.peak_rss_bytes = std::nan("");
  } else {
    r.peak_rss_bytes = std::nan("");
  }
  r.gflops = r.time_ms_median > 0 ? r.flops / (r.time_ms_median * 1e-3) / 1e9 : 0;
  return r;
}

const std::vector<std::string>& sweep_columns() {
  static const std::vector<std::string> columns{
      "backend",        "params",         "device",     "dtype",       "batch",
      "heads",          "seq_len",        "head_dim",   "pass",        "reps",
      "time_ms_median", "time_ms_p10",    "time_ms_p90", "peak_bytes", "analytic_bytes",
      "peak_rss_bytes", "flops",          "gflops",     "status",      "reason",
      "seed",           "threads",        "commit"};
  return columns;
}

const std::vector<std::string>& sweep_key_columns() {
  static const std::vector<std::string> columns{"backend", "params",  "device",   "dtype", "batch",
                                                "heads",   "seq_len", "head_dim", "pass"};
  return columns;
}

std::string sweep_point_key(const SweepPoint& p) {
  return fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}", p.backend, p.params, core::device_name(p.device),
                     dtype_label(p), p.batch, p.heads, p.seq_len, p.head_dim, p.pass);
}

std::map<std::string, std::string> sweep_row(const SweepPoint& p, const SweepResult& r,
                                             const SweepConfig& c) {
  const bool timed = r.status == "ok" || r.status == "slow";
  auto num = [&](double v) { return timed ? core::csv_number(v) : std::string(); };
  return {{"backend", p.backend},
          {"params", p.params},
          {"device", std::string(core::device_name(p.device))},
          {"dtype", dtype_label(p)},
          {"batch", std::to_string(p.batch)},
          {"heads", std::to_string(p.heads)},
          {"seq_len", std::to_string(p.seq_len)},
          {"head_dim", std::to_string(p.head_dim)},
          {"pass", p.pass},
          {"reps", std::to_string(r.reps)},
          {"time_ms_median", num(r.time_ms_median)},
          {"time_ms_p10", num(r.time_ms_p10)},
          {"time_ms_p90", num(r.time_ms_p90)},
          {"peak_bytes", num(r.peak_bytes)},
          {"analytic_bytes", r.analytic_bytes > 0 ? core::csv_number(r.analytic_bytes) : ""},
          {"peak_rss_bytes", timed && !std::isnan(r.peak_rss_bytes) ? core::csv_number(r.peak_rss_bytes) : ""},
          {"flops", r.flops > 0 ? core::csv_number(r.flops) : ""},
          {"gflops", num(r.gflops)},
          {"status", r.status},
          {"reason", r.reason},
          {"seed", std::to_string(c.seed)},
          {"threads", std::to_string(core::num_threads())},
          {"commit", core::git_commit()}};
}

int run_sweep(const SweepConfig& config, const std::string& out_csv, int stop_after) {
  require_device(config);  // before any output: a CUDA config on a machine without a GPU
  const core::ScopedMatmulPrecision precision(config.precision);  // restored when done
  const auto points = expand_grid(config);
  // Check every backend spec (type and keys) before measuring anything.
  {
    int64_t max_n = *std::max_element(config.seq_len.begin(), config.seq_len.end());
    std::set<std::string> checked;
    for (const auto& p : points) {
      if (!checked.insert(p.backend + "|" + p.params).second) continue;
      SweepPoint probe = p;
      probe.batch = 1;
      probe.heads = 1;
      probe.seq_len = max_n;
      attention::make_attention(p.spec, shape_of(probe), options_of(probe, config), config.context);
    }
  }

  core::CsvWriter writer(out_csv, sweep_columns());
  const std::map<std::string, std::string> done = existing_rows(out_csv, sweep_key_columns());

  std::map<std::string, int64_t> slow_at;  // series -> shortest N that was too slow
  int errors = 0, written = 0, skipped_existing = 0;
  const auto start = Clock::now();
  const std::size_t total = points.size();
  for (std::size_t i = 0; i < total; ++i) {
    const SweepPoint& p = points[i];
    const std::string key = sweep_point_key(p);
    const std::string series = series_key(p);
    auto it = done.find(key);
    if (it != done.end()) {
      ++skipped_existing;
      if (it->second == "slow") {
        auto s = slow_at.find(series);
        if (s == slow_at.end() || p.seq_len < s->second) slow_at[series] = p.seq_len;
      }
      continue;
    }
    if (stop_after >= 0 && written >= stop_after) {
      std::fprintf(stderr, "sweep: stopping after %d rows (LRA_SWEEP_STOP_AFTER)\n", written);
      return errors;
    }
    SweepResult r;
    auto slow = slow_at.find(series);
    if (slow != slow_at.end() && p.seq_len > slow->second) {
      r = analyse_point(p, config);
      if (r.status == "ok") {
        r.status = "skipped";
        r.reason = fmt::format("seq_len {} already exceeded max_call_seconds {}", slow->second,
                               config.max_call_seconds);
      }
    } else {
      try {
        r = measure_point(p, config);
      } catch (const std::bad_alloc&) {
        r = SweepResult{};
        r.status = "oom";
        r.reason = "allocation failed (std::bad_alloc)";
      } catch (const Error& e) {
        r = SweepResult{};
        r.status = is_device_oom(e) ? "oom" : "error";
        r.reason = e.what();
      }
    }
    if (r.status == "slow") {
      auto s = slow_at.find(series);
      if (s == slow_at.end() || p.seq_len < s->second) slow_at[series] = p.seq_len;
    }
    if (r.status == "error") ++errors;
    writer.write_row(sweep_row(p, r, config));
    ++written;

    double elapsed = seconds_since(start);
    std::size_t remaining = total - i - 1;
    double eta = written > 0 ? elapsed / written * static_cast<double>(remaining) : 0;
    std::string what = fmt::format("{}{}{} {} B={} H={} N={} D={}", p.backend,
                                   p.params.empty() ? "" : " ", p.params, p.pass, p.batch, p.heads,
                                   p.seq_len, p.head_dim);
    if (r.status == "ok" || r.status == "slow") {
      std::fprintf(stderr, "[%zu/%zu] %s: %.3f ms (p10 %.3f, p90 %.3f, %d reps), peak %s, %.1f GFLOP/s%s | %.0fs, ETA ~%.0fs\n",
                   i + 1, total, what.c_str(), r.time_ms_median, r.time_ms_p10, r.time_ms_p90, r.reps,
                   format_bytes(r.peak_bytes).c_str(), r.gflops, r.status == "slow" ? " [slow]" : "",
                   elapsed, eta);
    } else {
      std::fprintf(stderr, "[%zu/%zu] %s: %s — %s\n", i + 1, total, what.c_str(), r.status.c_str(),
                   r.reason.c_str());
    }
  }
  if (skipped_existing > 0)
    std::fprintf(stderr, "sweep: %d points were already in %s (resumed)\n", skipped_existing,
                 out_csv.c_str());
  std::fprintf(stderr, "sweep: %d new rows in %s (%.1f s)%s\n", written, out_csv.c_str(),
               seconds_since(start), errors ? fmt::format(", {} errors", errors).c_str() : "");
  return errors;
}

}  // namespace lra::harness
