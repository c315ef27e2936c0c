#pragma once
// Training checkpoints: parameters, AdamW moments, the data-order position, the best
// validation result so far and the step, in one binary file written atomically
// (temp file, fsync, rename). Layout (little-endian):
//   "LRACKPT\0" | u32 version | u64 config hash | u64 payload bytes | payload | u64 FNV-1a of
//   payload payload: i64 step, i64 epoch, i64 position, f64 best_val_accuracy, i64 best_step,
//            f64 wall_seconds, f64 interval_loss_sum, i64 interval_correct,
//            i64 interval_examples, u32 tensor count, then per tensor:
//            u32 name length, name, u8 dtype (0 f32, 1 f64), u32 rank, i64 dims[rank], data.
// A wrong magic, version, config hash, checksum, missing or mis-shaped tensor is an
// lra::Error naming the file. Tensors on a device are copied to the host to be saved and
// loaded back onto their device (explicit copies, one per tensor).
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace lra::model {

struct TrainState {
  int64_t step = 0;   // optimizer steps done
  int64_t epoch = 0;  // data order: epoch and position inside tasks::epoch_order
  int64_t position = 0;
  double best_val_accuracy = -1;
  int64_t best_step = 0;
  double wall_seconds = 0;
  // Training loss/accuracy accumulated since the last evaluation.
  double interval_loss_sum = 0;
  int64_t interval_correct = 0, interval_examples = 0;
};

struct NamedTensor {
  std::string name;
  core::Tensor tensor;
};

inline constexpr uint32_t checkpoint_version = 1;

void save_checkpoint(const std::string& path, uint64_t config_hash, const TrainState& state,
                     const std::vector<NamedTensor>& tensors);
// Reads `path` into the given tensors (matched by name; every one must be present with
// its shape and dtype) and returns the state.
TrainState load_checkpoint(const std::string& path, uint64_t config_hash,
                           std::vector<NamedTensor>& tensors);

}  // namespace lra::model
