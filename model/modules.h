#pragma once
// Building blocks of the encoder classifier. Each module owns named parameters
// (core::Parameter), keeps what its forward needs for the backward (one forward in
// flight), and its backward accumulates parameter gradients and returns the input
// gradient. Tensors of rows are [R, C] views of [B, N, C] activations, so every linear
// layer is one GEMM over all B * N rows.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "attention/attention.h"
#include "core/parameter.h"
#include "core/ops_train.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace lra::model {

using core::DType;
using core::Parameter;
using core::Shape;
using core::Tensor;

// What a forward pass needs besides its inputs: dropout on/off and the counters that
// make every dropout mask a pure function of (seed, step, layer, site).
struct RunState {
  bool training = false;
  uint64_t dropout_seed = 0;
  int64_t step = 0;
};

// The seed mix (core::mix64) and a name hash used to derive seeds.
using core::mix64;
uint64_t hash_name(const std::string& name);

// Fills `t` with normal(0, std) from a stream that depends only on (seed, name).
void init_normal(Tensor& t, uint64_t seed, const std::string& name, double std);

class Linear {
 public:
  Linear(const std::string& name, int64_t in, int64_t out, DType dtype, uint64_t init_seed);
  Tensor forward(const Tensor& x);  // x: [R, in] -> [R, out]
  // x W without the bias, for a caller that adds bias() in its own fused pass
  // (core::bias_dropout_add, bias_gelu, bias_heads_first); backward() is unchanged: its
  // dy is the gradient of x W + bias.
  Tensor forward_unbiased(const Tensor& x);
  const Tensor& bias() const { return bias_.value; }
  // Returns dx, or adds it into *dx_accum (same shape as x) and returns it undefined.
  Tensor backward(const Tensor& dy, Tensor* dx_accum = nullptr);
  void collect(std::vector<Parameter*>& out) {
    out.push_back(&weight_);
    out.push_back(&bias_);
  }
  int64_t in() const { return weight_.value.dim(0); }
  int64_t out() const { return weight_.value.dim(1); }

 private:
  Parameter weight_, bias_;  // weight [in, out], bias [out]
  Tensor x_;
};

class LayerNorm {
 public:
  LayerNorm(const std::string& name, int64_t dim, DType dtype);
  Tensor forward(const Tensor& x);
  // residual_grad (optional): the gradient reaching x around this LayerNorm through a
  // residual connection, added into the returned dx in the same pass.
  Tensor backward(const Tensor& dy, const Tensor& residual_grad = Tensor());
  void collect(std::vector<Parameter*>& out) {
    out.push_back(&gamma_);
    out.push_back(&beta_);
  }

 private:
  Parameter gamma_, beta_;
  Tensor x_, mean_, rstd_;
};

// Inverted dropout with a counter-based mask, drawn where it is applied and never stored
// (the backward draws it again); the identity when not training or p = 0.
class Dropout {
 public:
  Dropout(double p, int64_t layer, int64_t site) : p_(p), layer_(layer), site_(site) {}
  // The draws of this site at `state` (p = 0 when not training), remembered for backward():
  // for a caller that applies them in a fused op (core::bias_dropout_add).
  core::DropoutDraw draw(const RunState& state);
  Tensor forward(const Tensor& x, const RunState& state);  // x times the mask
  Tensor backward(const Tensor& dy);  // dy times the mask of the last draw

 private:
  double p_;
  int64_t layer_, site_;
  core::DropoutDraw last_;  // p = 0: the last forward was the identity
};

struct MhaConfig {
  int64_t dim = 64, heads = 2, head_dim = 32;
  YAML::Node attention;        // the `attention:` spec
  attention::AttnShape shape;  // longest sequence and batch the backend will see
  double attention_dropout = 0;
  std::string context = "attention";
  core::Device device = core::Device::cpu;  // where the backend creates its tensors
};

class MultiHeadAttention {
 public:
  MultiHeadAttention(const std::string& name, const MhaConfig& config, int64_t layer, DType dtype,
                     uint64_t init_seed);
  // x: [B*N, C] rows of a [B, N, C] activation; key_mask [B, N]. Returns the output
  // projection without its bias (output_bias()), which the block adds in its dropout and
  // residual pass; backward() takes the gradient of the biased output.
  Tensor forward_unbiased(const Tensor& x, int64_t batch, int64_t seq, const Tensor& key_mask,
                          const RunState& state);
  const Tensor& output_bias() const { return wo_.bias(); }
  Tensor backward(const Tensor& dy);
  void collect(std::vector<Parameter*>& out);
  attention::Attention& backend() { return *attention_; }
  // Wall time spent inside the backend's forward and backward calls (for profiling).
  double attention_seconds() const { return attention_seconds_; }
  void reset_attention_seconds() { attention_seconds_ = 0; }

 private:
  int64_t heads_, head_dim_;
  double attention_seconds_ = 0;
  Linear wq_, wk_, wv_, wo_;
  std::unique_ptr<attention::Attention> attention_;
  attention::Context saved_;
  int64_t batch_ = 0, seq_ = 0;
};

// Pre-LN block: x + drop(MHA(LN(x))), then + drop(FFN(LN(.))), FFN = Linear GELU Linear.
class Block {
 public:
  Block(const std::string& name, const MhaConfig& config, int64_t hidden, double dropout,
        int64_t layer, DType dtype, uint64_t init_seed);
  Tensor forward(const Tensor& x, int64_t batch, int64_t seq, const Tensor& key_mask,
                 const RunState& state);
  Tensor backward(const Tensor& dy);
  void collect(std::vector<Parameter*>& out);
  MultiHeadAttention& attention() { return mha_; }
  const MultiHeadAttention& attention() const { return mha_; }

 private:
  LayerNorm ln1_, ln2_;
  MultiHeadAttention mha_;
  Linear ff1_, ff2_;
  Dropout drop_attn_, drop_ffn_;
  Tensor ff1_out_;  // ffn1's output without its bias (bias_gelu's input)
};

}  // namespace lra::model
