#pragma once
// The training loop on given datasets (lra::model::train loads them from the task
// registry; tests pass in-memory ones), and evaluation of a model on a split.
#include <string>

#include "model/classifier.h"
#include "model/config.h"
#include "model/optim.h"
#include "model/train.h"
#include "tasks/dataset.h"

namespace lra::model {

struct Splits {
  const tasks::Dataset* train = nullptr;
  const tasks::Dataset* val = nullptr;
  const tasks::Dataset* test = nullptr;  // may be null when settings.train.test is false
};

// One optimizer step on `batch`, as `lra train` runs every step: zero the gradients,
// forward (dropout per `state`), cross-entropy, backward, AdamW at learning rate `lr` and
// 1-based step state.step. On the CPU the loss is read back (a non-finite loss is an
// lra::Error naming `context` and the step, raised before the backward) and returned with
// the hit count. On a device nothing is read back (no host sync inside the step): the
// loss sum and hit count stay there in `device_stats` (core::cross_entropy_stats).
struct StepResult {
  double loss = 0;      // CPU: mean loss of the batch
  int64_t correct = 0;  // CPU: rows whose arg-max is the label
  Tensor device_stats;  // device: f64 [2] = [loss summed over rows, hits]
};
StepResult train_step(Classifier& model, AdamW& optimizer, const tasks::Batch& batch,
                      const RunState& state, double lr, const std::string& context);

TrainSummary train_on(const Settings& settings, const Splits& splits, const std::string& out_dir,
                      bool resume);

struct EvalResult {
  double loss = 0, accuracy = 0;
  int64_t examples = 0, tokens = 0;
};
// Loss and accuracy on the first `max_batches` batches (0 = all) of `batch` examples,
// in order, dropout off.
EvalResult evaluate(Classifier& model, const tasks::Dataset& data, int64_t batch,
                    int64_t max_batches, int64_t max_len);

}  // namespace lra::model
