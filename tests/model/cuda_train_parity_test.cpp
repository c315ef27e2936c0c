// Training on the GPU (train.device: cuda): the loss curve of 50 steps matches the CPU
// run of the same seed (nystrom and softmax, dropout on, clipping on), a short `train_on`
// run on the device (checkpoints copied to and from the host) tracks the CPU one, and
// asking for cuda where there is no device is a clear error (that test runs everywhere
// without a GPU). The GPU tests skip visibly without a device.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/cuda_runtime_info.h"
#include "core/csv.h"
#include "core/ops_train.h"
#include "model/classifier.h"
#include "model/config.h"
#include "model/optim.h"
#include "model/trainer.h"
#include "tests/model/test_util.h"

namespace lra::model {
namespace {
namespace fs = std::filesystem;

using test::temp_dir;

YAML::Node spec_for(const std::string& backend) {
  YAML::Node spec = test::tiny_spec(backend);
  if (backend == "nystrom") spec["landmarks"] = 4;
  return spec;
}

// A small ListOps-like setup: variable-length sequences padded to max_len, 4 classes.
ClassifierConfig tiny_classifier(const std::string& backend, core::Device device) {
  ClassifierConfig c;
  c.vocab = 8;
  c.num_classes = 4;
  c.max_len = 32;
  c.dim = 32;
  c.hidden = 64;
  c.heads = 2;
  c.head_dim = 16;
  c.layers = 2;
  c.head_hidden = 32;
  c.dropout = 0.1;
  c.attention_dropout = 0.1;
  c.batch = 16;
  c.attention = spec_for(backend);
  c.context = "cuda train parity";
  c.dtype = core::DType::f32;
  c.init_seed = 11;
  c.device = device;
  return c;
}

// 50 AdamW steps (clipping and weight decay on); returns the loss of every step.
std::vector<double> loss_curve(const std::string& backend, core::Device device,
                               const tasks::Dataset& data) {
  Classifier model(tiny_classifier(backend, device));
  AdamWConfig ac;
  ac.weight_decay = 0.01;
  ac.clip_norm = 1.0;
  AdamW opt(model.parameters(), ac);
  std::vector<double> losses;
  std::vector<int64_t> order = tasks::epoch_order(data.size(), 5, 0);
  for (int64_t step = 1; step <= 50; ++step) {
    int64_t start = ((step - 1) * 16) % (data.size() - 16);
    std::vector<int64_t> idx(order.begin() + start, order.begin() + start + 16);
    tasks::Batch b = tasks::make_batch(data, idx, 32, false, core::DType::f32);
    RunState state{true, 99, step};
    opt.zero_grad();
    Tensor logits = model.forward(b.ids, b.mask, b.ids2, b.mask2, b.batch, b.seq, state);
    EXPECT_EQ(logits.device(), device);
    auto ce = core::cross_entropy(logits, b.labels);
    losses.push_back(ce.loss);
    model.backward(core::cross_entropy_backward(ce.probs, b.labels));
    opt.update(1e-3, step);
  }
  EXPECT_TRUE(std::isfinite(opt.last_grad_norm()));
  for (Parameter* p : model.parameters()) {
    EXPECT_EQ(p->value.device(), device) << p->name;
    EXPECT_EQ(p->grad.device(), device) << p->name;
  }
  for (const Tensor& m : opt.first_moments()) EXPECT_EQ(m.device(), device);
  return losses;
}

class CudaTraining : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (core::cuda_device_count() == 0)
      GTEST_SKIP() << "skipping GPU test: " << core::cuda_unavailable_reason();
    if (!test::has_backend(GetParam()))
      GTEST_SKIP() << "attention backend '" << GetParam() << "' is not registered";
  }
};

TEST_P(CudaTraining, LossCurveMatchesCpuFor50Steps) {
  auto data = test::majority_dataset(400, 21, 12, 32);
  std::vector<double> cpu = loss_curve(GetParam(), core::Device::cpu, data);
  std::vector<double> gpu = loss_curve(GetParam(), core::Device::cuda, data);
  ASSERT_EQ(cpu.size(), gpu.size());
  for (std::size_t i = 0; i < cpu.size(); ++i)
    EXPECT_NEAR(gpu[i], cpu[i], 1e-3 * std::abs(cpu[i])) << "step " << i + 1;
  // It trained: the loss moved (a model stuck at its init would fail the parity trivially).
  EXPECT_NE(cpu.front(), cpu.back());
}

TEST_P(CudaTraining, DeviceRunsAreBitIdentical) {
  // No atomics anywhere in a step: the same seed gives the same losses, bit for bit.
  auto data = test::majority_dataset(400, 22, 12, 32);
  std::vector<double> a = loss_curve(GetParam(), core::Device::cuda, data);
  std::vector<double> b = loss_curve(GetParam(), core::Device::cuda, data);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(std::memcmp(&a[i], &b[i], sizeof(double)), 0) << "step " << i + 1;
}

TEST_P(CudaTraining, TrainOnDeviceTracksCpuRunAndCheckpoints) {
  auto train = test::majority_dataset(200, 31, 8, 16);
  auto val = test::majority_dataset(48, 32, 8, 16);
  auto testset = test::majority_dataset(48, 33, 8, 16);
  YAML::Node c = test::tiny_training_config(spec_for(GetParam()), 16);
  c["model"]["pooling"] = "cls";  // exercises prepend_row and the CLS masks on the device
  c["train"]["steps"] = 8;
  c["train"]["eval_every"] = 4;
  c["train"]["lr"] = 3e-3;
  c["train"]["clip_norm"] = 0.5;
  c["train"]["log_every"] = 2;
  c["train"]["seed"] = 3;
  std::string dir_cpu = temp_dir("cpu"), dir_gpu = temp_dir("gpu");
  TrainSummary a = train_on(parse_settings(c, "cpu run"), Splits{&train, &val, &testset}, dir_cpu, false);
  c["train"]["device"] = "cuda";
  TrainSummary b = train_on(parse_settings(c, "gpu run"), Splits{&train, &val, &testset}, dir_gpu, false);
  EXPECT_EQ(b.steps, 8);
  EXPECT_TRUE(std::isfinite(b.test_accuracy));  // best.ckpt was loaded back onto the device
  core::CsvTable ma = core::read_csv(dir_cpu + "/metrics.csv");
  core::CsvTable mb = core::read_csv(dir_gpu + "/metrics.csv");
  ASSERT_EQ(ma.rows.size(), mb.rows.size());
  for (std::size_t i = 0; i < ma.rows.size(); ++i) {
    double la = std::stod(ma.rows[i][ma.column("loss")]);
    double lb = std::stod(mb.rows[i][mb.column("loss")]);
    EXPECT_NEAR(lb, la, 1e-3 * std::abs(la)) << "metrics row " << i;
  }
  std::ifstream in(dir_gpu + "/summary.json");
  std::string json((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(json.find("\"device\": \"cuda\""), std::string::npos) << json;
  fs::remove_all(dir_cpu);
  fs::remove_all(dir_gpu);
}

TEST_P(CudaTraining, ResumeOnDeviceIsBitExact) {
  // Checkpoints copy device tensors to the host and back; the device-side loss sums are
  // flushed into the checkpointed interval state. A resumed run must equal the full one.
  auto train = test::majority_dataset(120, 41, 6, 12);
  auto val = test::majority_dataset(32, 42, 6, 12);
  auto testset = test::majority_dataset(32, 43, 6, 12);
  Splits splits{&train, &val, &testset};
  YAML::Node c = test::tiny_training_config(spec_for(GetParam()), 12);
  c["model"]["attention_dropout"] = 0.1;
  c["train"]["steps"] = 12;
  c["train"]["eval_every"] = 4;
  c["train"]["log_every"] = 3;
  c["train"]["lr"] = 3e-3;
  c["train"]["clip_norm"] = 0.5;
  c["train"]["weight_decay"] = 0.01;
  c["train"]["seed"] = 5;
  c["train"]["device"] = "cuda";
  std::string a = temp_dir("resume_full"), b = temp_dir("resume_split");
  TrainSummary full = train_on(parse_settings(c, "resume"), splits, a, false);
  YAML::Node half = YAML::Clone(c);
  // Mid-interval (eval every 4) at a log step (every 3): the device loss sums are read
  // at the same steps in both runs, so the interval sums are added in the same order.
  half["train"]["stop_at"] = 6;
  train_on(parse_settings(half, "resume"), splits, b, false);
  TrainSummary second = train_on(parse_settings(c, "resume"), splits, b, true);
  EXPECT_EQ(second.steps, 12);
  EXPECT_EQ(second.best_step, full.best_step);
  EXPECT_EQ(second.best_val_accuracy, full.best_val_accuracy);
  EXPECT_EQ(second.test_accuracy, full.test_accuracy);
  core::CsvTable ma = core::read_csv(a + "/metrics.csv");
  core::CsvTable mb = core::read_csv(b + "/metrics.csv");
  ASSERT_EQ(ma.rows.size(), mb.rows.size());
  for (std::size_t i = 0; i < ma.rows.size(); ++i)
    EXPECT_EQ(ma.rows[i][ma.column("loss")], mb.rows[i][mb.column("loss")]) << "row " << i;
  fs::remove_all(a);
  fs::remove_all(b);
}

INSTANTIATE_TEST_SUITE_P(Backends, CudaTraining, ::testing::Values("nystrom", "softmax"),
                         [](const auto& info) { return info.param; });

// Runs on machines without a usable GPU (CI, CPU-only builds): a clear error naming the
// key and the reason, before any output is written.
TEST(CudaTrainingConfig, DeviceCudaWithoutGpuIsAClearError) {
  if (core::cuda_device_count() > 0)
    GTEST_SKIP() << "a CUDA device is present: this test covers machines without one";
  auto train = test::majority_dataset(40, 1, 8, 16);
  auto val = test::majority_dataset(16, 2, 8, 16);
  YAML::Node c = test::tiny_training_config(YAML::Load("{type: softmax}"), 16);
  c["train"]["batch"] = 8;
  c["train"]["steps"] = 2;
  c["train"]["test"] = false;
  c["train"]["device"] = "cuda";
  Settings s = parse_settings(c, "device.yaml");  // a valid config on any machine
  EXPECT_EQ(s.train.device, "cuda");
  std::string dir = temp_dir("nodevice");
  const std::string reason = core::cuda_unavailable_reason();
  ASSERT_FALSE(reason.empty());
  try {
    train_on(s, Splits{&train, &val, nullptr}, dir, false);
    FAIL() << "train.device: cuda trained without a device";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("device.yaml"), std::string::npos) << msg;
    EXPECT_NE(msg.find("train.device"), std::string::npos) << msg;
    EXPECT_NE(msg.find(reason), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(dir)) << "nothing is written before the device check";
  // The model alone refuses too (e.g. a caller that bypasses train_on).
  ClassifierConfig cc = tiny_classifier("softmax", core::Device::cuda);
  try {
    Classifier model(cc);
    FAIL() << "a cuda Classifier was built without a device";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.device"), std::string::npos) << e.what();
  }
}

TEST(CudaTrainingConfig, DeviceKeyIsValidatedAndWritten) {
  YAML::Node c;
  c["task"]["name"] = "memory";
  c["task"]["max_len"] = 16;
  c["model"]["dim"] = 16;
  c["attention"]["type"] = "softmax";
  c["train"]["batch"] = 4;
  Settings s = parse_settings(c, "default.yaml");
  EXPECT_EQ(s.train.device, "cpu");
  EXPECT_EQ(settings_to_yaml(s)["train"]["device"].as<std::string>(), "cpu");
  const uint64_t cpu_hash = config_hash(s);
  c["train"]["device"] = "cuda";
  Settings g = parse_settings(c, "default.yaml");
  EXPECT_EQ(settings_to_yaml(g)["train"]["device"].as<std::string>(), "cuda");
  EXPECT_NE(config_hash(g), cpu_hash) << "a CPU checkpoint must not resume a GPU run";
  c["train"]["device"] = "tpu";
  try {
    parse_settings(c, "bad.yaml");
    FAIL() << "device: tpu was accepted";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("device"), std::string::npos) << msg;
    EXPECT_NE(msg.find("tpu"), std::string::npos) << msg;
  }
}

TEST(CudaTrainingConfig, MatmulPrecisionKeyIsValidatedAndHashed) {
  YAML::Node c;
  c["task"]["name"] = "memory";
  c["task"]["max_len"] = 16;
  c["model"]["dim"] = 16;
  c["attention"]["type"] = "softmax";
  c["train"]["batch"] = 4;
  c["train"]["device"] = "cuda";
  Settings fp32 = parse_settings(c, "p.yaml");
  EXPECT_EQ(fp32.train.matmul_precision, "fp32");
  c["train"]["matmul_precision"] = "fp32";
  EXPECT_EQ(config_hash(parse_settings(c, "p.yaml")), config_hash(fp32))
      << "the default written out keeps the hash of configs from before the key";
  c["train"]["matmul_precision"] = "tf32";
  Settings tf32 = parse_settings(c, "p.yaml");
  EXPECT_EQ(settings_to_yaml(tf32)["train"]["matmul_precision"].as<std::string>(), "tf32");
  EXPECT_NE(config_hash(tf32), config_hash(fp32)) << "TF32 changes the numerics";
  auto expect_error = [&](const YAML::Node& config, const std::string& what) {
    try {
      parse_settings(config, "bad.yaml");
      FAIL() << "accepted: " << what;
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("bad.yaml"), std::string::npos) << msg;
      EXPECT_NE(msg.find("matmul_precision"), std::string::npos) << msg;
      EXPECT_NE(msg.find(what), std::string::npos) << msg;
    }
  };
  YAML::Node on_cpu = YAML::Clone(c);
  on_cpu["train"]["device"] = "cpu";
  expect_error(on_cpu, "cuda only");
  YAML::Node bad = YAML::Clone(c);
  bad["train"]["matmul_precision"] = "fp16";
  expect_error(bad, "fp16");
}

}  // namespace
}  // namespace lra::model
