#include "tasks/image.h"

#include <algorithm>

#include "core/error.h"
#include "core/parallel.h"
#include "tasks/dataset.h"
#include "tasks/task_io.h"

namespace lra::tasks::image {

uint8_t grayscale(uint8_t r, uint8_t g, uint8_t b) {
  const float scale = static_cast<float>(1.0 / 255.0);
  float y = static_cast<float>(r) * scale * 0.2989f;
  y = y + static_cast<float>(g) * scale * 0.5870f;
  y = y + static_cast<float>(b) * scale * 0.1140f;
  float scaled = y * 255.5f;
  scaled = std::clamp(scaled, 0.0f, 255.0f);
  return static_cast<uint8_t>(scaled);
}

namespace {

// Appends the records of one .bin file (checked: whole records, labels 0-9).
void load_bin(const std::string& path, int64_t max_len, std::vector<Example>& out) {
  std::string bytes = read_file(path);
  LRA_CHECK(!bytes.empty(), "{}: empty file (expected 3073-byte CIFAR-10 records)", path);
  const std::size_t whole = bytes.size() / record_bytes;
  if (bytes.size() % record_bytes != 0)
    fail("{}: truncated record {} at byte offset {}: {} of {} bytes (file size {} is not a multiple of {})", path,
         whole, whole * record_bytes, bytes.size() % record_bytes, record_bytes, bytes.size(), record_bytes);
  std::size_t first = out.size();
  out.resize(first + whole);
  for (std::size_t i = 0; i < whole; ++i) {
    auto label = static_cast<unsigned char>(bytes[i * record_bytes]);
    LRA_CHECK(label <= 9, "{}: record {} (byte offset {}): label {} outside [0, 9]", path, i, i * record_bytes, label);
  }
  const auto n = static_cast<std::size_t>(std::min<int64_t>(max_len, pixels));
  core::parallel_for(static_cast<int64_t>(whole), 256, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const auto* rec = reinterpret_cast<const unsigned char*>(bytes.data()) + i * record_bytes;
      Example& e = out[first + static_cast<std::size_t>(i)];
      e.label = rec[0];
      e.tokens.resize(n);
      for (std::size_t p = 0; p < n; ++p)
        e.tokens[p] = grayscale(rec[1 + p], rec[1 + pixels + p], rec[1 + 2 * pixels + p]) + 1;
    }
  });
}

std::unique_ptr<Dataset> load(const YAML::Node& node, Split split, const std::string& context) {
  TaskSection section(node, context, {"name", "data_dir", "max_len"});
  std::string dir = section.require_string("data_dir");
  int64_t max_len = section.get_int("max_len", pixels, 1, 1 << 30);
  std::vector<Example> examples;
  if (split == Split::test) {
    load_bin(dir + "/test_batch.bin", max_len, examples);
  } else {
    for (int k = 1; k <= 5; ++k) load_bin(fmt::format("{}/data_batch_{}.bin", dir, k), max_len, examples);
    // Validation = the last 10% of the training records (LRA: 45K train / 5K val).
    std::size_t n_val = (examples.size() + 5) / 10;
    std::size_t n_train = examples.size() - n_val;
    if (split == Split::val) examples.erase(examples.begin(), examples.begin() + static_cast<std::ptrdiff_t>(n_train));
    else examples.resize(n_train);
    LRA_CHECK(!examples.empty(), "{}: the {} split is empty", dir, split_name(split));
  }
  validate_examples(examples, 10, vocab_size, false, dir);
  return std::make_unique<VectorDataset>("image", std::move(examples), 10, vocab_size, false);
}

}  // namespace

LRA_REGISTER_TASK(TaskInfo{"image", "Image: CIFAR-10 grayscale, 1024 pixels, 10 classes (*.bin)", 10, vocab_size,
                           pixels, false, load});

}  // namespace lra::tasks::image
