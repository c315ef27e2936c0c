#pragma once
// Analytic count of one training step of the encoder classifier (forward, backward, AdamW),
// for predicting its time on a device from two ceilings (the method of the device notes:
// floating-point operations over the arithmetic rate, bytes over the memory bandwidth, the
// larger of the two is the floor).
//
// The step is counted op by op, at the granularity at which lra (and the PyTorch LRA code
// it is compared with) runs it: each forward op (embedding, dropout, LayerNorm, each
// Linear, the attention backend, GELU, dropout with its residual add, pooling, head,
// cross-entropy) and each
// backward op (a Linear's backward is two: the input gradient, and the weight and bias
// gradients), then zeroing the gradients, the global gradient norm and the AdamW update.
// For each op:
//   flops: floating-point operations (a multiply-add is 2; GEMMs 2·m·n·k, elementwise
//          ops a few per element; the attention backend's from its cost());
//   bytes: the fewest bytes the op must move through device memory: every input read once,
//          every output written once (token ids are 4 bytes). The attention backend counts
//          as one op per direction: q, k, v, mask (and d_out) read, out (and d_q, d_k, d_v)
//          written, its parameters read (and their gradients written) — none of its inner
//          matrices, which a fused kernel keeps on chip. Pure layout copies (lra's
//          transpose of q, k, v and of the attention output between [B, N, H, D] and
//          [B, H, N, D]) are left out: a GEMM can write or read either layout. Dropout masks
//          are counter-based and regenerated, so they are not read or written.
// The predicted time of the step is then sum over ops of max(flops / F, bytes / W) for a
// GEMM rate F and a copy bandwidth W (roofline_seconds): the time if every op ran at the
// ceiling that bounds it, with nothing overlapping. It is a floor for an implementation
// that runs these ops one after another; measured / predicted is the gap.
#include <cstdint>
#include <string>
#include <vector>

#include "model/classifier.h"

namespace lra::model {

struct OpCount {
  std::string name;  // e.g. "ffn1 forward"
  double flops = 0;  // per run of the op
  double bytes = 0;  // per run of the op
  double runs = 1;   // runs per step (the layers)
};

struct StepCount {
  std::vector<OpCount> ops;
  double parameters = 0;  // trainable parameters (embedding tables and backends' included)
  // An estimate of lra's peak live bytes during the step (parameters, gradients, AdamW
  // moments, the activations the forward keeps, the backends' extra bytes from cost(),
  // the backward's gradients in flight). Not a floor: `lra sweep` records a cell whose
  // estimate exceeds memory_limit as `oom` instead of running it.
  double memory_bytes = 0;

  double flops() const;  // sum over ops of runs * flops
  double bytes() const;  // sum over ops of runs * bytes
  // Sum over ops of runs * max(flops / flops_per_s, bytes / bytes_per_s), in seconds.
  double roofline_seconds(double flops_per_s, double bytes_per_s) const;
};

// The count of one training step of the classifier `config` on a batch of `batch`
// examples of `seq` tokens (seq <= config.max_len; with pairs, two documents each), every
// token real (all-ones mask), dropout active where config's rates are non-zero. Builds one
// attention backend of config.attention on config.device for its cost() and parameters.
StepCount training_step_count(const ClassifierConfig& config, int64_t batch, int64_t seq);

}  // namespace lra::model
