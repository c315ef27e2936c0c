#include <algorithm>

#include "attention/attention.h"
#include "core/error.h"
#include "core/op_checks.h"

namespace lra::attention {

const Tensor& Context::at(const std::string& name) const {
  auto it = tensors_.find(name);
  LRA_CHECK(it != tensors_.end(), "attention context: no saved tensor '{}'", name);
  return it->second;
}

SpecReader::SpecReader(const YAML::Node& spec, std::string context)
    : spec_(spec), context_(std::move(context)) {
  LRA_CHECK(spec_.IsMap(), "{}: attention spec must be a mapping with a 'type' key", context_);
  LRA_CHECK(spec_["type"] && spec_["type"].IsScalar(), "{}: attention spec has no 'type' key",
            context_);
  type_ = spec_["type"].as<std::string>();
  read_.push_back("type");
}

YAML::Node SpecReader::lookup(const std::string& key) {
  read_.push_back(key);
  return spec_[key];
}

int64_t SpecReader::get_int(const std::string& key, int64_t fallback) {
  YAML::Node n = lookup(key);
  if (!n) return fallback;
  try {
    return n.as<int64_t>();
  } catch (const YAML::Exception&) {
    fail("{}: attention.{} must be an integer, got '{}'", context_, key, n.Scalar());
  }
}

double SpecReader::get_double(const std::string& key, double fallback) {
  YAML::Node n = lookup(key);
  if (!n) return fallback;
  try {
    return n.as<double>();
  } catch (const YAML::Exception&) {
    fail("{}: attention.{} must be a number, got '{}'", context_, key, n.Scalar());
  }
}

bool SpecReader::get_bool(const std::string& key, bool fallback) {
  YAML::Node n = lookup(key);
  if (!n) return fallback;
  try {
    return n.as<bool>();
  } catch (const YAML::Exception&) {
    fail("{}: attention.{} must be true or false, got '{}'", context_, key, n.Scalar());
  }
}

std::string SpecReader::get_string(const std::string& key, const std::string& fallback) {
  YAML::Node n = lookup(key);
  if (!n) return fallback;
  LRA_CHECK(n.IsScalar(), "{}: attention.{} must be a string", context_, key);
  return n.as<std::string>();
}

void SpecReader::finish() const {
  for (const auto& entry : spec_) {
    std::string key = entry.first.as<std::string>();
    if (std::find(read_.begin(), read_.end(), key) == read_.end())
      fail("{}: unknown key attention.{} for backend '{}'", context_, key, type_);
  }
}

namespace {
std::map<std::string, BackendInfo>& table() {
  static std::map<std::string, BackendInfo> entries;
  return entries;
}
}  // namespace

bool register_backend(BackendInfo info) {
  std::string name = info.name;
  table().emplace(name, std::move(info));
  return true;
}

const std::map<std::string, BackendInfo>& backends() { return table(); }

std::unique_ptr<Attention> make_attention(const YAML::Node& spec, const AttnShape& shape,
                                          const AttentionOptions& options,
                                          const std::string& context) {
  SpecReader reader(spec, context);
  auto it = table().find(reader.type());
  if (it == table().end()) {
    std::string known;
    for (const auto& [name, info] : table()) known += (known.empty() ? "" : ", ") + name;
    fail("{}: unknown attention type '{}' (known: {})", context, reader.type(), known);
  }
  if (options.dtype == core::DType::bf16 && !it->second.takes_bf16) {
    std::string takers;
    for (const auto& [name, info] : table())
      if (info.takes_bf16) takers += (takers.empty() ? "" : ", ") + name;
    fail("{}: attention '{}' takes f32 or f64 inputs, not bf16 (bf16 inputs: {})", context,
         reader.type(), takers);
  }
  std::unique_ptr<Attention> backend;
  try {
    backend = it->second.factory(reader, shape, options);
  } catch (const Error& e) {  // a factory's own checks name the key; add where it came from
    const std::string what = e.what();
    if (what.rfind(context, 0) == 0) throw;
    fail("{}: {}", context, what);
  }
  reader.finish();
  return backend;
}

void check_attention_inputs(const char* who, const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor& mask) {
  core::check_rank(q, 4, 4, who);
  core::check_same_shape(q, k, who);
  core::check_same_shape(q, v, who);
  core::check_same_dtype(q, k, who);
  core::check_same_dtype(q, v, who);
  core::check_key_mask(who, mask, q.dim(0), q.dim(2));
}

std::string spec_params(const YAML::Node& spec) {
  std::map<std::string, std::string> sorted;
  for (const auto& entry : spec) {
    std::string key = entry.first.as<std::string>();
    if (key != "type") sorted[key] = entry.second.as<std::string>();
  }
  std::string out;
  for (const auto& [k, v] : sorted) out += (out.empty() ? "" : ";") + k + "=" + v;
  return out;
}

}  // namespace lra::attention
