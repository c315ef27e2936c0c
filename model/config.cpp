#include "model/config.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>

#include "attention/attention.h"
#include "core/error.h"
#include "model/modules.h"
#include "model/train.h"
#include "tasks/dataset.h"

namespace lra::model {
namespace {

const std::vector<std::string> section_names = {"task", "model", "attention", "train"};

// Typed, range-checked access to one config section; finish() rejects unread keys.
class Section {
 public:
  Section(const YAML::Node& root, std::string section, std::string context)
      : section_(std::move(section)), context_(std::move(context)) {
    node_ = root[section_];
    LRA_CHECK(!node_ || node_.IsMap() || node_.IsNull(), "{}: section '{}' must be a mapping",
              context_, section_);
  }
  // Const lookups: operator[] on a non-const YAML::Node would insert the key.
  bool has(const std::string& key) const {
    const YAML::Node& n = node_;
    return n && n.IsMap() && n[key];
  }
  // An absent key gives an undefined node (`!node` is true).
  YAML::Node raw(const std::string& key) {
    read_.insert(key);
    static const YAML::Node empty(YAML::NodeType::Map);
    const YAML::Node& n = node_ && node_.IsMap() ? node_ : empty;
    return n[key];
  }
  int64_t get_int(const std::string& key, int64_t fallback, int64_t lo, int64_t hi) {
    YAML::Node n = raw(key);
    if (!n) return fallback;
    int64_t v = 0;
    try {
      LRA_CHECK(n.IsScalar(), "not a scalar");
      v = n.as<int64_t>();
    } catch (const std::exception&) {
      fail("{}: {}.{} must be an integer, got '{}'", context_, section_, key, text(n));
    }
    LRA_CHECK(v >= lo && v <= hi, "{}: {}.{} = {} is outside [{}, {}]", context_, section_, key, v,
              lo, hi);
    return v;
  }
  double get_double(const std::string& key, double fallback, double lo, double hi) {
    YAML::Node n = raw(key);
    if (!n) return fallback;
    double v = 0;
    try {
      LRA_CHECK(n.IsScalar(), "not a scalar");
      v = n.as<double>();
    } catch (const std::exception&) {
      fail("{}: {}.{} must be a number, got '{}'", context_, section_, key, text(n));
    }
    LRA_CHECK(v >= lo && v <= hi, "{}: {}.{} = {} is outside [{}, {}]", context_, section_, key, v,
              lo, hi);
    return v;
  }
  bool get_bool(const std::string& key, bool fallback) {
    YAML::Node n = raw(key);
    if (!n) return fallback;
    try {
      LRA_CHECK(n.IsScalar(), "not a scalar");
      return n.as<bool>();
    } catch (const std::exception&) {
      fail("{}: {}.{} must be true or false, got '{}'", context_, section_, key, text(n));
    }
  }
  std::string get_string(const std::string& key, const std::string& fallback) {
    YAML::Node n = raw(key);
    if (!n) return fallback;
    LRA_CHECK(n.IsScalar(), "{}: {}.{} must be a string, got '{}'", context_, section_, key,
              text(n));
    return n.as<std::string>();
  }
  std::string get_choice(const std::string& key, const std::string& fallback,
                         const std::vector<std::string>& choices) {
    std::string v = get_string(key, fallback);
    if (std::find(choices.begin(), choices.end(), v) == choices.end()) {
      std::string known;
      for (const auto& c : choices) known += (known.empty() ? "" : ", ") + c;
      fail("{}: {}.{} = '{}' is not one of: {}", context_, section_, key, v, known);
    }
    return v;
  }
  void finish() const {
    if (!node_ || !node_.IsMap()) return;
    for (const auto& entry : node_) {
      std::string key = entry.first.as<std::string>();
      if (!read_.count(key)) {
        std::string known;
        for (const auto& k : read_) known += (known.empty() ? "" : ", ") + k;
        fail("{}: unknown key {}.{} (known: {})", context_, section_, key, known);
      }
    }
  }

 private:
  static std::string text(const YAML::Node& n) {
    if (n.IsScalar()) return n.Scalar();
    YAML::Emitter e;
    e << YAML::Flow << n;
    return e.c_str();
  }
  YAML::Node node_;
  std::string section_, context_;
  std::set<std::string> read_;
};

constexpr int64_t big = int64_t{1} << 40;

}  // namespace

uint64_t derived_seed(int64_t explicit_seed, int64_t base_seed, uint64_t tag) {
  if (explicit_seed >= 0) return static_cast<uint64_t>(explicit_seed);
  return mix64(static_cast<uint64_t>(base_seed) ^ mix64(tag));
}

Settings parse_settings(const YAML::Node& config, const std::string& context) {
  LRA_CHECK(config.IsMap(),
            "{}: a config must be a mapping with sections task, model, attention, "
            "train",
            context);
  for (const auto& entry : config) {
    std::string key = entry.first.as<std::string>();
    LRA_CHECK(std::find(section_names.begin(), section_names.end(), key) != section_names.end(),
              "{}: unknown section '{}' (known: task, model, attention, train)", context, key);
  }
  Settings s;
  s.context = context;

  // task: name, data_dir, max_len here; the loader validates its own further keys.
  LRA_CHECK(config["task"] && config["task"].IsMap(),
            "{}: missing section 'task' (with at least "
            "'name')",
            context);
  s.task.section = YAML::Clone(config["task"]);
  {
    Section t(config, "task", context);
    LRA_CHECK(t.has("name"), "{}: task.name is required", context);
    s.task.name = t.get_string("name", "");
    const auto& registry = tasks::tasks();
    auto it = registry.find(s.task.name);
    int64_t default_len = it != registry.end() ? it->second.default_max_len : 0;
    s.task.data_dir = t.get_string("data_dir", "data/" + s.task.name);
    LRA_CHECK(default_len > 0 || t.has("max_len"), "{}: task.max_len is required for task '{}'",
              context, s.task.name);
    s.task.max_len = t.get_int("max_len", default_len, 1, big);
  }
  s.task.section["data_dir"] = s.task.data_dir;
  s.task.section["max_len"] = s.task.max_len;

  {
    Section m(config, "model", context);
    ModelSettings& o = s.model;
    o.dim = m.get_int("dim", 64, 1, 1 << 16);
    o.hidden = m.get_int("hidden", 128, 1, 1 << 20);
    o.heads = m.get_int("heads", 2, 1, 1024);
    o.layers = m.get_int("layers", 2, 0, 1024);
    LRA_CHECK(m.has("head_dim") || o.dim % o.heads == 0,
              "{}: model.dim {} is not divisible by model.heads {}; set model.head_dim", context,
              o.dim, o.heads);
    o.head_dim = m.get_int("head_dim", o.dim / o.heads, 1, 1 << 16);
    o.head_hidden = m.get_int("head_hidden", o.hidden, 1, 1 << 20);
    o.dropout = m.get_double("dropout", 0.1, 0.0, 0.99);
    o.attention_dropout = m.get_double("attention_dropout", 0.1, 0.0, 0.99);
    o.pooling = m.get_choice("pooling", "mean", {"mean", "mean_all", "cls"});
    o.positions = m.get_choice("positions", "learned", {"learned", "sinusoidal"});
    m.finish();
  }
  {
    Section t(config, "train", context);
    TrainSettings& o = s.train;
    o.batch = t.get_int("batch", 32, 1, 1 << 20);
    o.steps = t.get_int("steps", 1000, 1, big);
    o.warmup = t.get_int("warmup", 0, 0, o.steps);
    o.eval_every = t.get_int("eval_every", 100, 1, big);
    o.eval_batches = t.get_int("eval_batches", 0, 0, big);
    o.eval_batch = t.get_int("eval_batch", o.batch, 1, 1 << 20);
    o.stop_at = t.get_int("stop_at", 0, 0, o.steps);
    o.log_every = t.get_int("log_every", 10, 1, big);
    o.threads = t.get_int("threads", 0, 0, 1024);
    o.seed = t.get_int("seed", 0, 0, std::numeric_limits<int64_t>::max());
    o.data_seed = t.get_int("data_seed", -1, -1, std::numeric_limits<int64_t>::max());
    o.dropout_seed = t.get_int("dropout_seed", -1, -1, std::numeric_limits<int64_t>::max());
    o.lr = t.get_double("lr", 1e-4, 0.0, 10.0);
    o.weight_decay = t.get_double("weight_decay", 0.0, 0.0, 10.0);
    o.clip_norm = t.get_double("clip_norm", 0.0, 0.0, 1e12);
    o.beta1 = t.get_double("beta1", 0.9, 0.0, 0.999999);
    o.beta2 = t.get_double("beta2", 0.999, 0.0, 0.999999999);
    o.eps = t.get_double("eps", 1e-6, 0.0, 1.0);
    o.dtype = t.get_choice("dtype", "f32", {"f32", "f64"});
    o.device = t.get_choice("device", "cpu", {"cpu", "cuda"});
    o.matmul_precision = t.get_choice("matmul_precision", "fp32", {"fp32", "tf32"});
    LRA_CHECK(o.matmul_precision == "fp32" || o.device == "cuda",
              "{}: train.matmul_precision: tf32 applies to train.device cuda only (CPU products "
              "are exact fp32)",
              context);
    LRA_CHECK(o.matmul_precision == "fp32" || o.dtype == "f32",
              "{}: train.matmul_precision: tf32 applies to train.dtype f32 only", context);
    o.test = t.get_bool("test", true);
    t.finish();
  }

  // attention: the backend reads (and rejects unknown) keys; build one at the longest
  // sequence so a max_len the backend cannot serve fails here, before any training.
  LRA_CHECK(config["attention"] && config["attention"].IsMap(),
            "{}: missing section 'attention' (e.g. attention: {{type: softmax}})", context);
  s.attention = YAML::Clone(config["attention"]);
  {
    attention::AttnShape shape{s.train.batch, s.model.heads,
                               s.task.max_len + (s.model.pooling == "cls" ? 1 : 0),
                               s.model.head_dim};
    attention::AttentionOptions options;
    options.dropout = s.model.attention_dropout;
    options.name_prefix = "layer0.attn.";
    try {
      attention::make_attention(s.attention, shape, options, context);
    } catch (const Error& e) {
      fail("{} (attention at task.max_len = {})", e.what(), s.task.max_len);
    }
  }
  return s;
}

YAML::Node settings_to_yaml(const Settings& s) {
  YAML::Node root;
  root["task"] = YAML::Clone(s.task.section);
  YAML::Node m;
  m["dim"] = s.model.dim;
  m["hidden"] = s.model.hidden;
  m["heads"] = s.model.heads;
  m["head_dim"] = s.model.head_dim;
  m["layers"] = s.model.layers;
  m["head_hidden"] = s.model.head_hidden;
  m["dropout"] = s.model.dropout;
  m["attention_dropout"] = s.model.attention_dropout;
  m["pooling"] = s.model.pooling;
  m["positions"] = s.model.positions;
  root["model"] = m;
  root["attention"] = YAML::Clone(s.attention);
  YAML::Node t;
  const TrainSettings& o = s.train;
  t["batch"] = o.batch;
  t["steps"] = o.steps;
  t["warmup"] = o.warmup;
  t["lr"] = o.lr;
  t["weight_decay"] = o.weight_decay;
  t["clip_norm"] = o.clip_norm;
  t["beta1"] = o.beta1;
  t["beta2"] = o.beta2;
  t["eps"] = o.eps;
  t["eval_every"] = o.eval_every;
  t["eval_batches"] = o.eval_batches;
  t["eval_batch"] = o.eval_batch;
  t["seed"] = o.seed;
  t["data_seed"] = o.data_seed;
  t["dropout_seed"] = o.dropout_seed;
  t["dtype"] = o.dtype;
  t["device"] = o.device;
  t["matmul_precision"] = o.matmul_precision;
  t["test"] = o.test;
  t["stop_at"] = o.stop_at;
  t["log_every"] = o.log_every;
  t["threads"] = o.threads;
  root["train"] = t;
  return root;
}

uint64_t config_hash(const Settings& settings) {
  Settings copy = settings;
  copy.train.stop_at = 0;
  copy.train.threads = 0;
  copy.train.log_every = 0;
  YAML::Node node = settings_to_yaml(copy);
  // train.device: cpu is left out, so runs from before the key existed keep their hash
  // (a CPU checkpoint still resumes); cuda changes the numerics and so the hash.
  if (copy.train.device == "cpu") node["train"].remove("device");
  if (copy.train.matmul_precision == "fp32") node["train"].remove("matmul_precision");  // likewise
  YAML::Emitter e;
  e << YAML::Flow << node;
  return hash_name(e.c_str());
}

ClassifierConfig classifier_config(const Settings& s, int64_t vocab, int64_t num_classes,
                                   bool pairs) {
  ClassifierConfig c;
  c.vocab = vocab;
  c.num_classes = num_classes;
  c.max_len = s.task.max_len;
  c.dim = s.model.dim;
  c.hidden = s.model.hidden;
  c.heads = s.model.heads;
  c.head_dim = s.model.head_dim;
  c.layers = s.model.layers;
  c.head_hidden = s.model.head_hidden;
  c.dropout = s.model.dropout;
  c.attention_dropout = s.model.attention_dropout;
  c.pooling = parse_pooling(s.model.pooling);
  c.learned_positions = s.model.positions == "learned";
  c.pairs = pairs;
  c.batch = s.train.batch;
  c.attention = s.attention;
  c.context = s.context;
  c.dtype = core::parse_dtype(s.train.dtype);
  c.device = core::parse_device(s.train.device);
  c.init_seed = derived_seed(-1, s.train.seed, 0x696e6974ull);
  return c;
}

// ---------------------------------------------------------------- load_config
namespace {

YAML::Node load_yaml(const std::string& path, const std::string& what) {
  std::error_code ec;
  LRA_CHECK(std::filesystem::is_regular_file(path, ec), "{}: file not found: {}", what, path);
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    fail("{}: invalid YAML: {}", path, e.what());
  }
}

// A section given as a file name: that file's same-named section (or the whole file
// when it has no such key).
YAML::Node include_section(const std::string& file, const std::string& section,
                           const std::string& context) {
  YAML::Node doc = load_yaml(file, context + ": " + section + " include");
  if (doc.IsMap() && doc[section]) doc = doc[section];
  LRA_CHECK(doc.IsMap(), "{}: included file {} holds no '{}' mapping", context, file, section);
  return YAML::Clone(doc);
}

std::string resolve_relative(const std::string& file, const std::string& base_dir) {
  std::filesystem::path p(file);
  if (p.is_absolute()) return file;
  std::filesystem::path beside = std::filesystem::path(base_dir) / p;
  std::error_code ec;
  if (std::filesystem::exists(beside, ec)) return beside.lexically_normal().string();
  return file;
}

}  // namespace

YAML::Node load_config(const std::string& path, const std::vector<std::string>& overrides) {
  YAML::Node root = YAML::Clone(load_yaml(path, "config"));
  LRA_CHECK(root.IsMap(),
            "{}: a config must be a mapping with sections task, model, attention, "
            "train",
            path);
  std::string base = std::filesystem::path(path).parent_path().string();
  for (const auto& name : section_names)
    if (root[name] && root[name].IsScalar())
      root[name] =
          include_section(resolve_relative(root[name].as<std::string>(), base), name, path);

  for (const auto& item : overrides) {
    auto eq = item.find('=');
    LRA_CHECK(eq != std::string::npos && eq > 0,
              "--set {}: expected section.key=value or section=FILE.yaml", item);
    std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    auto dot = key.find('.');
    std::string section = key.substr(0, dot);
    LRA_CHECK(std::find(section_names.begin(), section_names.end(), section) != section_names.end(),
              "--set {}: unknown section '{}' (known: task, model, attention, train)", item,
              section);
    if (dot == std::string::npos) {
      root[section] = include_section(value, section, "--set " + item);
      continue;
    }
    std::string field = key.substr(dot + 1);
    LRA_CHECK(!field.empty() && field.find('.') == std::string::npos,
              "--set {}: expected one key after the section", item);
    LRA_CHECK(!value.empty(), "--set {}: empty value", item);
    YAML::Node parsed;
    try {
      parsed = YAML::Load(value);
    } catch (const YAML::Exception& e) {
      fail("--set {}: invalid YAML value: {}", item, e.what());
    }
    if (!root[section] || !root[section].IsMap()) root[section] = YAML::Node(YAML::NodeType::Map);
    root[section][field] = parsed;
  }
  LRA_CHECK(root["task"] && root["task"]["name"], "{}: task.name is required", path);
  // An unknown task name is an error here, with the list of known ones.
  try {
    tasks::task_info(root["task"]["name"].as<std::string>());
  } catch (const Error& e) {
    fail("{}: task.name: {}", path, e.what());
  }
  return settings_to_yaml(parse_settings(root, path));
}

}  // namespace lra::model
