#include "model/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"

namespace lra::model {
namespace {

constexpr char magic[8] = {'L', 'R', 'A', 'C', 'K', 'P', 'T', '\0'};

uint64_t fnv1a(const std::string& bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

template <typename T>
void put(std::string& out, T value) {
  char buf[sizeof(T)];
  std::memcpy(buf, &value, sizeof(T));
  out.append(buf, sizeof(T));
}

class Reader {
 public:
  Reader(const std::string& data, std::size_t pos, std::string path)
      : data_(data), pos_(pos), path_(std::move(path)) {}
  template <typename T>
  T get() {
    need(sizeof(T));
    T value;
    std::memcpy(&value, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }
  std::string bytes(std::size_t n) {
    need(n);
    std::string s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  const char* raw(std::size_t n) {
    need(n);
    const char* p = data_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::size_t pos() const { return pos_; }

 private:
  void need(std::size_t n) const {
    LRA_CHECK(pos_ + n <= data_.size(),
              "checkpoint {}: truncated (needs {} bytes at offset {}, size {})", path_, n, pos_,
              data_.size());
  }
  const std::string& data_;
  std::size_t pos_;
  std::string path_;
};

}  // namespace

void save_checkpoint(const std::string& path, uint64_t config_hash, const TrainState& state,
                     const std::vector<NamedTensor>& tensors) {
  std::string payload;
  put<int64_t>(payload, state.step);
  put<int64_t>(payload, state.epoch);
  put<int64_t>(payload, state.position);
  put<double>(payload, state.best_val_accuracy);
  put<int64_t>(payload, state.best_step);
  put<double>(payload, state.wall_seconds);
  put<double>(payload, state.interval_loss_sum);
  put<int64_t>(payload, state.interval_correct);
  put<int64_t>(payload, state.interval_examples);
  put<uint32_t>(payload, static_cast<uint32_t>(tensors.size()));
  for (const auto& [name, t] : tensors) {
    // Device tensors are copied to the host (explicitly, one copy per tensor).
    const core::Tensor host = t.device() == core::Device::cpu ? t : t.to(core::Device::cpu);
    put<uint32_t>(payload, static_cast<uint32_t>(name.size()));
    payload += name;
    LRA_CHECK(t.dtype() != core::DType::bf16, "checkpoint {}: tensor {} is bf16; checkpoints hold f32 or f64",
              path, name);
    put<uint8_t>(payload, t.dtype() == core::DType::f32 ? 0 : 1);
    put<uint32_t>(payload, static_cast<uint32_t>(t.rank()));
    for (int i = 0; i < t.rank(); ++i) put<int64_t>(payload, t.dim(i));
    payload.append(static_cast<const char*>(host.raw_data()), host.bytes());
  }
  std::string file(magic, sizeof(magic));
  put<uint32_t>(file, checkpoint_version);
  put<uint64_t>(file, config_hash);
  put<uint64_t>(file, payload.size());
  file += payload;
  put<uint64_t>(file, fnv1a(payload));

  // Atomic replace: write a temp file beside the target, fsync it, rename over.
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  LRA_CHECK(fd >= 0, "checkpoint: cannot create {}: {}", tmp, std::strerror(errno));
  std::size_t done = 0;
  while (done < file.size()) {
    ssize_t n = ::write(fd, file.data() + done, file.size() - done);
    if (n < 0) {
      int err = errno;
      ::close(fd);
      fail("checkpoint: write to {} failed: {}", tmp, std::strerror(err));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    fail("checkpoint: fsync of {} failed: {}", tmp, std::strerror(err));
  }
  ::close(fd);
  LRA_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "checkpoint: rename {} -> {} failed: {}",
            tmp, path, std::strerror(errno));
  // Make the rename itself durable.
  std::string dir = std::filesystem::path(path).parent_path().string();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

TrainState load_checkpoint(const std::string& path, uint64_t config_hash,
                           std::vector<NamedTensor>& tensors) {
  std::ifstream in(path, std::ios::binary);
  LRA_CHECK(in.good(), "checkpoint {}: cannot open", path);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Reader head(data, 0, path);
  LRA_CHECK(data.size() >= sizeof(magic) && std::memcmp(data.data(), magic, sizeof(magic)) == 0,
            "checkpoint {}: not an lra checkpoint (bad magic)", path);
  head.raw(sizeof(magic));
  auto version = head.get<uint32_t>();
  LRA_CHECK(version == checkpoint_version, "checkpoint {}: version {} (this build reads {})", path,
            version, checkpoint_version);
  auto hash = head.get<uint64_t>();
  LRA_CHECK(hash == config_hash,
            "checkpoint {}: written for a different config (hash {:016x}, this config {:016x}); "
            "resume with the run's own config.yaml",
            path, hash, config_hash);
  auto payload_bytes = head.get<uint64_t>();
  LRA_CHECK(head.pos() + payload_bytes + sizeof(uint64_t) == data.size(),
            "checkpoint {}: size {} does not match its header (payload {} bytes); truncated or "
            "corrupt",
            path, data.size(), payload_bytes);
  std::string payload = data.substr(head.pos(), payload_bytes);
  uint64_t checksum;
  std::memcpy(&checksum, data.data() + head.pos() + payload_bytes, sizeof(checksum));
  LRA_CHECK(checksum == fnv1a(payload), "checkpoint {}: checksum mismatch (corrupt file)", path);

  Reader r(payload, 0, path);
  TrainState s;
  s.step = r.get<int64_t>();
  s.epoch = r.get<int64_t>();
  s.position = r.get<int64_t>();
  s.best_val_accuracy = r.get<double>();
  s.best_step = r.get<int64_t>();
  s.wall_seconds = r.get<double>();
  s.interval_loss_sum = r.get<double>();
  s.interval_correct = r.get<int64_t>();
  s.interval_examples = r.get<int64_t>();
  auto count = r.get<uint32_t>();
  std::map<std::string, core::Tensor*> wanted;
  for (auto& nt : tensors) wanted[nt.name] = &nt.tensor;
  std::size_t found = 0;
  for (uint32_t i = 0; i < count; ++i) {
    std::string name = r.bytes(r.get<uint32_t>());
    auto dtype = r.get<uint8_t>() == 0 ? core::DType::f32 : core::DType::f64;
    auto rank = r.get<uint32_t>();
    LRA_CHECK(rank <= 4, "checkpoint {}: tensor {} has rank {}", path, name, rank);
    std::vector<int64_t> dims;
    for (uint32_t d = 0; d < rank; ++d) dims.push_back(r.get<int64_t>());
    core::Shape shape(dims);
    auto it = wanted.find(name);
    LRA_CHECK(it != wanted.end(), "checkpoint {}: unexpected tensor '{}' (model differs)", path,
              name);
    core::Tensor& t = *it->second;
    LRA_CHECK(t.shape() == shape && t.dtype() == dtype,
              "checkpoint {}: tensor '{}' is {} {}, the model expects {} {}", path, name,
              core::dtype_name(dtype), shape.str(), core::dtype_name(t.dtype()), t.shape_str());
    if (t.device() == core::Device::cpu) {
      std::memcpy(t.raw_data(), r.raw(t.bytes()), t.bytes());
    } else {
      core::Tensor host = core::Tensor::empty(t.shape(), t.dtype());
      std::memcpy(host.raw_data(), r.raw(t.bytes()), t.bytes());
      t.copy_from(host);  // explicit host -> device copy
    }
    ++found;
  }
  LRA_CHECK(found == tensors.size(), "checkpoint {}: holds {} of the model's {} tensors", path,
            found, tensors.size());
  return s;
}

}  // namespace lra::model
