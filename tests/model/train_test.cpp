// The training loop: learning on a task with a known answer, bit-exact resume, the
// schedule, checkpoints (corrupt / mismatched), and config validation errors.
#include "model/train.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/csv.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/optim.h"
#include "model/trainer.h"
#include "tests/model/test_util.h"

namespace lra::model {
namespace {
namespace fs = std::filesystem;

using test::temp_dir;

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

YAML::Node small_config(const std::string& backend, int64_t steps, int64_t eval_every) {
  YAML::Node c = test::tiny_training_config(test::tiny_spec(backend), 16);
  c["train"]["steps"] = steps;
  c["train"]["warmup"] = steps / 10;
  c["train"]["eval_every"] = eval_every;
  c["train"]["lr"] = 3e-3;
  c["train"]["log_every"] = 1000000;
  c["train"]["seed"] = 3;
  return c;
}

TEST(Schedule, MatchesOneCycleLinear) {
  Schedule s{1e-3, 4, 12};
  double lo = 1e-3 / 25, end = lo / 1e4;
  EXPECT_NEAR(learning_rate(s, 1), lo, 1e-15);
  EXPECT_NEAR(learning_rate(s, 2), lo + (1e-3 - lo) / 3, 1e-15);
  EXPECT_NEAR(learning_rate(s, 4), 1e-3, 1e-15);
  EXPECT_NEAR(learning_rate(s, 8), 1e-3 + (end - 1e-3) * 4.0 / 8.0, 1e-15);
  EXPECT_NEAR(learning_rate(s, 12), end, 1e-15);
  Schedule flat{1e-3, 0, 5};
  EXPECT_NEAR(learning_rate(flat, 1), 1e-3, 1e-15);
  EXPECT_NEAR(learning_rate(flat, 5), end, 1e-15);
}

TEST(Training, LearnsMajorityTaskWellAboveChance) {
  // 4 classes (chance 25%); an untrained or broken model stays near 25-35%.
  if (!test::has_backend("softmax"))
    GTEST_SKIP() << "attention backend 'softmax' is not registered";
  auto train = test::majority_dataset(2000, 1, 8, 16);
  auto val = test::majority_dataset(256, 2, 8, 16);
  auto testset = test::majority_dataset(256, 3, 8, 16);
  Settings s = parse_settings(small_config("softmax", 400, 100), "learning test");
  std::string dir = temp_dir("learn");
  auto t0 = std::chrono::steady_clock::now();
  TrainSummary sum = train_on(s, Splits{&train, &val, &testset}, dir, false);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "learning test: best val " << sum.best_val_accuracy << " test " << sum.test_accuracy
            << " in " << secs << " s\n";
  EXPECT_GE(sum.best_val_accuracy, 0.70);
  EXPECT_GE(sum.test_accuracy, 0.65);
  EXPECT_EQ(sum.steps, 400);
  for (const char* f : {"config.yaml", "metrics.csv", "best.ckpt", "last.ckpt", "summary.json"})
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
  core::CsvTable m = core::read_csv(dir + "/metrics.csv");
  EXPECT_EQ(m.rows.size(), 4u * 2u + 1u);  // (train, val) x 4 evals + test
  EXPECT_EQ(m.rows.back()[m.column("split")], "test");
  EXPECT_EQ(std::stoll(m.rows.back()[m.column("step")]), sum.best_step);
  fs::remove_all(dir);
}

TEST(Training, ResumeIsBitExact) {
  std::string backend = test::has_backend("softmax") ? "softmax" : "";
  if (backend.empty()) GTEST_SKIP() << "attention backend 'softmax' is not registered";
  auto train = test::majority_dataset(100, 4, 6, 12);  // 6 batches per epoch: crosses epochs
  auto val = test::majority_dataset(40, 5, 6, 12);
  auto testset = test::majority_dataset(40, 6, 6, 12);
  Splits splits{&train, &val, &testset};
  YAML::Node cfg = small_config(backend, 20, 4);  // model dropout 0.1 stays on
  // Attention dropout on too: softmax derives its masks from (layer seed, step).
  cfg["model"]["attention_dropout"] = 0.1;
  cfg["train"]["clip_norm"] = 0.5;
  cfg["train"]["weight_decay"] = 0.01;

  std::string a = temp_dir("resume_a"), b = temp_dir("resume_b");
  TrainSummary full = train_on(parse_settings(cfg, "resume test"), splits, a, false);
  YAML::Node half = YAML::Clone(cfg);
  half["train"]["stop_at"] = 10;  // not a multiple of eval_every: mid-interval state
  TrainSummary first = train_on(parse_settings(half, "resume test"), splits, b, false);
  EXPECT_EQ(first.steps, 10);
  EXPECT_TRUE(std::isnan(first.test_accuracy));
  TrainSummary second = train_on(parse_settings(cfg, "resume test"), splits, b, true);
  EXPECT_EQ(second.steps, 20);
  EXPECT_EQ(second.best_val_accuracy, full.best_val_accuracy);
  EXPECT_EQ(second.best_step, full.best_step);
  EXPECT_EQ(second.test_accuracy, full.test_accuracy);

  // Checkpoints: identical bytes except the wall-clock field and the checksum.
  for (const char* name : {"last.ckpt", "best.ckpt"}) {
    std::string x = read_all(a + "/" + name), y = read_all(b + "/" + name);
    ASSERT_EQ(x.size(), y.size()) << name;
    const std::size_t header = 28, wall = header + 40;
    EXPECT_TRUE(x.substr(0, wall) == y.substr(0, wall)) << name;
    EXPECT_TRUE(x.substr(wall + 8, x.size() - wall - 16) ==
                y.substr(wall + 8, y.size() - wall - 16))
        << name;
  }
  // Metrics: same rows (timing columns aside).
  core::CsvTable ma = core::read_csv(a + "/metrics.csv"), mb = core::read_csv(b + "/metrics.csv");
  ASSERT_EQ(ma.rows.size(), mb.rows.size());
  for (std::size_t r = 0; r < ma.rows.size(); ++r)
    for (const char* col : {"step", "split", "loss", "accuracy", "lr"})
      EXPECT_EQ(ma.rows[r][ma.column(col)], mb.rows[r][mb.column(col)])
          << "row " << r << " " << col;

  // A changed config does not resume; a corrupt checkpoint is a clear error.
  YAML::Node changed = YAML::Clone(cfg);
  changed["train"]["lr"] = 1e-3;
  try {
    train_on(parse_settings(changed, "resume test"), splits, b, true);
    ADD_FAILURE() << "resume with another config did not fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("different config"), std::string::npos) << e.what();
  }
  std::string bytes = read_all(b + "/last.ckpt");
  bytes[bytes.size() / 2] ^= 0x5a;
  std::ofstream(b + "/last.ckpt", std::ios::binary | std::ios::trunc) << bytes;
  try {
    train_on(parse_settings(cfg, "resume test"), splits, b, true);
    ADD_FAILURE() << "resume from a corrupt checkpoint did not fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("checksum"), std::string::npos) << e.what();
  }
  std::ofstream(b + "/last.ckpt", std::ios::binary | std::ios::trunc) << bytes.substr(0, 20);
  EXPECT_THROW(train_on(parse_settings(cfg, "resume test"), splits, b, true), Error);
  // A fresh run refuses to overwrite a run directory.
  EXPECT_THROW(train_on(parse_settings(cfg, "resume test"), splits, a, false), Error);
  fs::remove_all(a);
  fs::remove_all(b);
}

// ---------------------------------------------------------------- config errors
class ConfigErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!tasks::tasks().count("listops")) GTEST_SKIP() << "task 'listops' is not registered";
    if (!test::has_backend("softmax"))
      GTEST_SKIP() << "attention backend 'softmax' is not registered";
    dir_ = temp_dir("config");
    fs::create_directories(dir_ + "/data");
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  // Expects exactly one lra::Error whose message holds every needle, and no run dir.
  void expect_error(const std::string& text, const std::vector<std::string>& overrides,
                    const std::vector<std::string>& needles) {
    std::string path = write("bad.yaml", text);
    std::string out = dir_ + "/run";
    try {
      YAML::Node cfg = load_config(path, overrides);
      train(cfg, out, false);
      ADD_FAILURE() << "no error for:\n" << text;
    } catch (const Error& e) {
      for (const auto& n : needles)
        EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
            << "'" << n << "' not in: " << e.what();
    }
    EXPECT_FALSE(fs::exists(out)) << "training started";
  }
  std::string base() const {
    return "task: {name: listops, data_dir: " + dir_ +
           "/data, max_len: 16}\n"
           "model: {dim: 8, hidden: 8, heads: 2, layers: 1}\n"
           "attention: {type: softmax}\n"
           "train: {batch: 2, steps: 2}\n";
  }
  std::string dir_;
};

TEST_F(ConfigErrors, UnknownKeyNamesKeyAndFile) {
  expect_error(base() + "", {"model.dimm=4"}, {"model.dimm", "bad.yaml"});
  expect_error(
      "task: {name: listops, data_dir: x}\nmodel: {dim: 8, colour: red}\nattention: {type: "
      "softmax}\n",
      {}, {"model.colour", "bad.yaml"});
  expect_error(base() + "extra: {a: 1}\n", {}, {"extra"});
  expect_error(base(), {"attention.landmarks=4"}, {"attention.landmarks"});
}

TEST_F(ConfigErrors, WrongTypeNamesKey) {
  expect_error(base(), {"train.batch=abc"}, {"train.batch", "integer"});
  expect_error(base(), {"model.dropout=[1, 2]"}, {"model.dropout"});
  expect_error(base(), {"model.pooling=max"}, {"model.pooling"});
}

TEST_F(ConfigErrors, MissingDataDir) {
  expect_error(base(), {"task.data_dir=" + dir_ + "/nowhere"}, {"data_dir", "nowhere"});
}

TEST_F(ConfigErrors, MaxLenTooLongForBackend) {
  if (!test::has_backend("linformer"))
    GTEST_SKIP() << "attention backend 'linformer' is not registered";
  expect_error(base(), {"attention.type=linformer", "attention.k=4", "attention.max_len=8"},
               {"linformer", "max_len"});
}

TEST_F(ConfigErrors, ResolvedConfigHasEveryDefaultAndIncludes) {
  write("attn.yaml", "attention: {type: softmax}\n");
  std::string path = write(
      "good.yaml", "task: {name: listops, data_dir: " + dir_ + "/data}\nattention: attn.yaml\n");
  YAML::Node c = load_config(path, {"train.steps=7"});
  EXPECT_EQ(c["train"]["steps"].as<int64_t>(), 7);
  EXPECT_EQ(c["task"]["max_len"].as<int64_t>(), 2000);  // the task's default
  EXPECT_EQ(c["model"]["dim"].as<int64_t>(), 64);
  EXPECT_EQ(c["model"]["head_dim"].as<int64_t>(), 32);
  EXPECT_EQ(c["model"]["pooling"].as<std::string>(), "mean");
  EXPECT_EQ(c["attention"]["type"].as<std::string>(), "softmax");
  EXPECT_EQ(c["train"]["lr"].as<double>(), 1e-4);
  // The resolved config resolves to itself.
  std::string again = write("again.yaml", YAML::Dump(c));
  EXPECT_EQ(YAML::Dump(load_config(again, {})), YAML::Dump(c));
}

}  // namespace
}  // namespace lra::model
