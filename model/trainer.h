#pragma once
// The training loop on given datasets (lra::model::train loads them from the task
// registry; tests pass in-memory ones), and evaluation of a model on a split.
#include <string>

#include "model/classifier.h"
#include "model/config.h"
#include "model/train.h"
#include "tasks/dataset.h"

namespace lra::model {

struct Splits {
  const tasks::Dataset* train = nullptr;
  const tasks::Dataset* val = nullptr;
  const tasks::Dataset* test = nullptr;  // may be null when settings.train.test is false
};

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
