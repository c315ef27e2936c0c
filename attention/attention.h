#pragma once
// The attention interface every backend implements, and the registry that builds one
// from an `attention:` spec (YAML). A backend is written once from core ops and runs on
// every device those ops support.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/parameter.h"
#include "core/tensor.h"

namespace lra::attention {

using core::Parameter;
using core::Tensor;

struct AttnShape {
  int64_t batch = 1, heads = 1, seq = 1, head_dim = 1;
};

// Analytic cost of one call at a shape: floating-point operations (multiply-add = 2)
// and the extra bytes a call allocates at its peak (inputs and output gradient excluded).
struct Cost {
  double forward_flops = 0, backward_flops = 0;
  double forward_bytes = 0, backward_bytes = 0;
};

// Tensors a forward pass keeps for its backward, by name.
class Context {
 public:
  Tensor& operator[](const std::string& name) { return tensors_[name]; }
  const Tensor& at(const std::string& name) const;  // throws lra::Error naming a missing entry
  bool has(const std::string& name) const { return tensors_.count(name) > 0; }
  void clear() { tensors_.clear(); }

 private:
  std::map<std::string, Tensor> tensors_;
};

// Options every backend receives from the model / harness.
struct AttentionOptions {
  uint64_t seed = 0;         // per-layer seed for random features / sampling
  double dropout = 0.0;      // attention dropout (backends that form attention weights)
  std::string name_prefix;   // prefix for parameter names, e.g. "layer0.attn."
  core::DType dtype = core::DType::f32;     // dtype of q, k, v and of parameters it creates
  core::Device device = core::Device::cpu;  // device of parameters the backend creates
};

class Attention {  // one instance per layer
 public:
  virtual ~Attention() = default;
  virtual std::string_view name() const = 0;
  // q, k, v: [B, H, N, D]; key_mask: [B, N] (1 = token, 0 = padding) or undefined.
  // out: [B, H, N, D] (allocated by the backend). Rows of padded queries may hold any
  // finite value; every real query ignores padded keys exactly.
  virtual void forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                       Tensor& out, Context& saved) = 0;
  // Gradients w.r.t. q, k, v (allocated by the backend) from d_out; parameter
  // gradients are accumulated into parameters()[i]->grad.
  virtual void backward(const Tensor& d_out, const Context& saved, Tensor& d_q, Tensor& d_k,
                        Tensor& d_v) = 0;
  virtual std::vector<Parameter*> parameters() { return {}; }
  virtual Cost cost(const AttnShape& shape) const = 0;
  // Training state: dropout on/off and the optimizer step (random-feature redraws).
  virtual void set_training(bool training) { training_ = training; }
  virtual void set_step(int64_t step) { step_ = step; }

 protected:
  bool training_ = false;
  int64_t step_ = 0;
};

// Reads the keys of one `attention:` spec with defaults and type checks, and rejects
// keys nobody read: finish() throws lra::Error naming the unknown key (and `context`,
// e.g. the config file) so a typo never silently falls back to a default.
class SpecReader {
 public:
  SpecReader(const YAML::Node& spec, std::string context);
  std::string type() const { return type_; }
  int64_t get_int(const std::string& key, int64_t fallback);
  double get_double(const std::string& key, double fallback);
  bool get_bool(const std::string& key, bool fallback);
  std::string get_string(const std::string& key, const std::string& fallback);
  void finish() const;

 private:
  YAML::Node spec_;
  std::string context_, type_;
  std::vector<std::string> read_;
  YAML::Node lookup(const std::string& key);
};

using Factory = std::function<std::unique_ptr<Attention>(SpecReader& spec, const AttnShape& shape,
                                                         const AttentionOptions& options)>;

struct BackendInfo {
  std::string name;         // the `type:` value
  std::string description;  // one line for `lra list`
  Factory factory;
  bool takes_bf16 = false;  // q, k, v (and options.dtype) may be bf16: stored bf16, fp32 math
};

// Registers a backend (called from static initialisers in each backend's file; the
// library is linked whole-archive so every registration runs).
bool register_backend(BackendInfo info);
const std::map<std::string, BackendInfo>& backends();

// Builds the backend named by spec["type"] for `shape` (shape.seq is the longest
// sequence it will see). Unknown types and unknown keys are errors naming `context`.
std::unique_ptr<Attention> make_attention(const YAML::Node& spec, const AttnShape& shape,
                                          const AttentionOptions& options = {},
                                          const std::string& context = "attention");

// Validates backend inputs: q, k, v of one shape [B, H, N, D] and dtype, the key mask
// [B, N] or undefined; errors name `who` and the shapes.
void check_attention_inputs(const char* who, const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor& key_mask);

// Canonical "key=value,..." text of a spec (sorted keys, type excluded) for CSV columns.
std::string spec_params(const YAML::Node& spec);

}  // namespace lra::attention

#define LRA_ATTENTION_CONCAT_INNER(a, b) a##b
#define LRA_ATTENTION_CONCAT(a, b) LRA_ATTENTION_CONCAT_INNER(a, b)
#define LRA_REGISTER_ATTENTION(...)                                      \
  static const bool LRA_ATTENTION_CONCAT(lra_backend_registered_, __LINE__) = \
      ::lra::attention::register_backend(__VA_ARGS__)
