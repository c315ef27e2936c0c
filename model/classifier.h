#pragma once
// The LRA encoder classifier: embeddings (token + learned or sinusoidal positions,
// optional CLS row) -> dropout -> L pre-LN blocks -> final LN -> pooling -> head
// (Linear -> ReLU -> Linear). With pairs (Retrieval) the same encoder embeds both
// documents (as one batch of 2B sequences) and the head sees [u, v, u*v, u-v].
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/modules.h"

namespace lra::model {

enum class Pooling { mean, mean_all, cls };
Pooling parse_pooling(const std::string& name);  // throws lra::Error for unknown names

struct ClassifierConfig {
  int64_t vocab = 0, num_classes = 2, max_len = 0;
  int64_t dim = 64, hidden = 128, heads = 2, head_dim = 32, layers = 2, head_hidden = 128;
  double dropout = 0.1, attention_dropout = 0.1;
  Pooling pooling = Pooling::mean;
  bool learned_positions = true;
  bool pairs = false;
  int64_t batch = 1;  // training batch (the backends' nominal shape)
  YAML::Node attention;
  std::string context = "config";  // names the config file in errors
  DType dtype = DType::f32;
  // Parameters, activations and the backends' tensors live here; ids and labels come
  // from the host and are copied to the device by the ops that take them.
  core::Device device = core::Device::cpu;
  uint64_t init_seed = 0;
};

class Classifier {
 public:
  explicit Classifier(const ClassifierConfig& config);
  // ids: batch * seq row-major; key_mask [batch, seq] (1 token, 0 padding). With pairs,
  // ids2/mask2 hold the second documents. Returns logits [batch, num_classes].
  Tensor forward(const std::vector<int32_t>& ids, const Tensor& key_mask,
                 const std::vector<int32_t>& ids2, const Tensor& mask2, int64_t batch, int64_t seq,
                 const RunState& state);
  // Accumulates every parameter gradient from d logits.
  void backward(const Tensor& d_logits);
  const std::vector<Parameter*>& parameters() const { return params_; }
  std::vector<attention::Attention*> backends();
  // Wall time inside the attention backends since the last reset (all layers).
  double attention_seconds() const;
  void reset_attention_seconds();
  const ClassifierConfig& config() const { return config_; }
  // Sequence length the attention sees for input length seq (CLS adds one row).
  int64_t attention_seq(int64_t seq) const {
    return seq + (config_.pooling == Pooling::cls ? 1 : 0);
  }

 private:
  ClassifierConfig config_;
  Parameter tokens_, positions_, cls_;  // positions_ is a fixed table when sinusoidal
  Dropout drop_embed_;
  std::vector<std::unique_ptr<Block>> blocks_;
  LayerNorm final_ln_;
  Linear head1_, head2_;
  std::vector<Parameter*> params_;

  // Saved for the backward.
  std::vector<int32_t> ids_;
  Tensor attn_mask_, pool_mask_, pooled_, head1_out_;
  int64_t batch_ = 0, seq_ = 0, rows_ = 0, aseq_ = 0;
};

}  // namespace lra::model
