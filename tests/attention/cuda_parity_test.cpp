// CPU <-> CUDA parity of every registered attention backend: forward output and the
// gradients w.r.t. q, k, v and every parameter, f64 and f32, with and without padding,
// the same inputs and parameters (copied to the device), device buffers poisoned before
// the device run. Backends registered later are covered by their default spec. Skips
// (visibly) without a device.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "attention/attention.h"
#include "core/cuda_runtime_info.h"
#include "core/rng.h"

namespace lra::attention {
namespace {

using core::Device;
using core::DType;
using core::Shape;

// Small specs per backend (several where a backend has distinct code paths); a backend
// without an entry runs with its defaults.
std::vector<std::string> specs_for(const std::string& name) {
  static const std::map<std::string, std::vector<std::string>> specs{
      {"softmax", {"{type: softmax}", "{type: softmax, kernel: composed}"}},  // flash, and N x N
      {"linear", {"{type: linear}"}},
      {"linformer",
       {"{type: linformer, k: 5}", "{type: linformer, k: 6, share_kv: false, max_len: 50}"}},
      {"nystrom",
       {"{type: nystrom, landmarks: 4, conv_kernel: 5}",
        "{type: nystrom, landmarks: 6, pinv_iters: 3, conv_kernel: 0}",
        "{type: nystrom, landmarks: 64, conv_kernel: 3}"}},  // m >= N: the exact path
      {"performer",
       {"{type: performer, features: 12, kernel: exp}",
        "{type: performer, features: 12, kernel: relu}"}},
      {"skeinformer",
       {"{type: skeinformer, samples: 6}",
        "{type: skeinformer, samples: 6, column_sampling: uniform, normalization: simple, "
        "pilot_reuse: false}",
        "{type: skeinformer, samples: 5, normalization: none}"}},
  };
  auto it = specs.find(name);
  if (it != specs.end()) return it->second;
  return {"{type: " + name + "}"};
}

struct Case {
  std::string spec;
  DType dtype;
  bool padded;
};

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (const auto& [name, info] : backends())
    for (const auto& spec : specs_for(name))
      for (DType dtype : {DType::f64, DType::f32})
        for (bool padded : {false, true}) cases.push_back({spec, dtype, padded});
  return cases;
}

class AttentionCudaParity : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (core::cuda_device_count() == 0)
      GTEST_SKIP() << "skipping GPU test: " << core::cuda_unavailable_reason();
  }
};

Tensor randn(const Shape& shape, uint64_t seed, DType dtype, double scale = 1.0) {
  Tensor t = Tensor::empty(shape, dtype);
  core::fill_normal(t, seed, 0, 0.0, scale);
  return t;
}

// Rows of [B, H, N, D] at padded positions set to 0 (the loss ignores padded queries).
Tensor zero_padded_rows(const Tensor& x, const std::vector<int64_t>& real) {
  std::vector<double> v = x.to_vector();
  int64_t h = x.dim(1), n = x.dim(2), d = x.dim(3);
  for (int64_t b = 0; b < x.dim(0); ++b)
    for (int64_t hh = 0; hh < h; ++hh)
      for (int64_t i = real[static_cast<std::size_t>(b)]; i < n; ++i)
        for (int64_t c = 0; c < d; ++c)
          v[static_cast<std::size_t>(((b * h + hh) * n + i) * d + c)] = 0;
  return Tensor::from_values(x.shape(), v, x.dtype());
}

// Max abs error over the real query rows relative to the largest CPU magnitude; every
// device value (padded rows included) must be finite.
double rel_error(const Tensor& dev, const Tensor& cpu, const std::vector<int64_t>* real_rows) {
  EXPECT_EQ(dev.device(), Device::cuda);
  EXPECT_EQ(dev.shape(), cpu.shape());
  auto g = dev.to_vector(), c = cpu.to_vector();
  double scale = 1e-30, err = 0;
  int64_t rank = cpu.rank();
  int64_t n = rank == 4 ? cpu.dim(2) : 1, d = rank == 4 ? cpu.dim(3) : 1,
          h = rank == 4 ? cpu.dim(1) : 1;
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (!std::isfinite(g[i])) return std::numeric_limits<double>::infinity();
    if (real_rows && rank == 4) {
      auto row = static_cast<int64_t>(i) / d % n;
      auto b = static_cast<int64_t>(i) / (d * n * h);
      if (row >= (*real_rows)[static_cast<std::size_t>(b)]) continue;
    }
    scale = std::max(scale, std::abs(c[i]));
    err = std::max(err, std::abs(g[i] - c[i]));
  }
  return err / scale;
}

TEST_P(AttentionCudaParity, ForwardAndGradientsMatchTheCpu) {
  const Case& c = GetParam();
  SCOPED_TRACE(c.spec + " " + std::string(core::dtype_name(c.dtype)) + (c.padded ? " padded" : ""));
  // N = 37: more than one warp of keys, not a multiple of the landmarks.
  AttnShape shape{2, 2, 37, 8};
  Shape s{2, 2, 37, 8};
  std::vector<int64_t> real =
      c.padded ? std::vector<int64_t>{37, 20} : std::vector<int64_t>{37, 37};
  AttentionOptions cpu_opt;
  cpu_opt.seed = 5;
  cpu_opt.dtype = c.dtype;
  AttentionOptions gpu_opt = cpu_opt;
  gpu_opt.device = Device::cuda;
  auto cpu_attn = make_attention(YAML::Load(c.spec), shape, cpu_opt, "parity spec");
  auto gpu_attn = make_attention(YAML::Load(c.spec), shape, gpu_opt, "parity spec");
  auto cpu_params = cpu_attn->parameters();
  auto gpu_params = gpu_attn->parameters();
  ASSERT_EQ(cpu_params.size(), gpu_params.size());
  for (std::size_t i = 0; i < cpu_params.size(); ++i) {
    ASSERT_EQ(gpu_params[i]->value.device(), Device::cuda) << gpu_params[i]->name;
    ASSERT_EQ(gpu_params[i]->grad.device(), Device::cuda) << gpu_params[i]->name;
    // Perturbed so a parameter that only looks like its initialisation is caught.
    Tensor v = randn(cpu_params[i]->value.shape(), 100 + i, c.dtype, 0.3);
    cpu_params[i]->value.copy_from(v);
    gpu_params[i]->value.copy_from(v);
    cpu_params[i]->zero_grad();
    gpu_params[i]->zero_grad();
  }

  Tensor q = randn(s, 1, c.dtype, 0.8), k = randn(s, 2, c.dtype, 0.8), v = randn(s, 3, c.dtype);
  Tensor d_out = zero_padded_rows(randn(s, 4, c.dtype), real);
  Tensor mask;
  if (c.padded) {
    std::vector<double> mv(2 * 37, 1.0);
    for (int64_t j = real[1]; j < 37; ++j) mv[static_cast<std::size_t>(37 + j)] = 0.0;
    mask = Tensor::from_values(Shape{2, 37}, mv, c.dtype);
  }

  Context cpu_ctx, gpu_ctx;
  Tensor out, dq, dk, dv;
  cpu_attn->forward(q, k, v, mask, out, cpu_ctx);
  cpu_attn->backward(d_out, cpu_ctx, dq, dk, dv);

  {  // NaN in the next device blocks of the output's size.
    Tensor junk = Tensor::empty(s, c.dtype, Device::cuda);
    junk.fill(std::numeric_limits<double>::quiet_NaN());
  }
  Tensor g_mask = mask.defined() ? mask.to(Device::cuda) : Tensor();
  Tensor g_out, g_dq, g_dk, g_dv;
  gpu_attn->forward(q.to(Device::cuda), k.to(Device::cuda), v.to(Device::cuda), g_mask, g_out,
                    gpu_ctx);
  gpu_attn->backward(d_out.to(Device::cuda), gpu_ctx, g_dq, g_dk, g_dv);

  // f32: cuBLAS and Eigen sum in different orders, and Nyström's pseudo-inverse iteration
  // amplifies rounding; f64 is held much tighter.
  double tol = c.dtype == DType::f64 ? 1e-9 : 2e-4;
  EXPECT_LE(rel_error(g_out, out, &real), tol) << "output";
  EXPECT_LE(rel_error(g_dq, dq, nullptr), tol) << "d_q";
  EXPECT_LE(rel_error(g_dk, dk, nullptr), tol) << "d_k";
  EXPECT_LE(rel_error(g_dv, dv, nullptr), tol) << "d_v";
  for (std::size_t i = 0; i < cpu_params.size(); ++i)
    EXPECT_LE(rel_error(gpu_params[i]->grad, cpu_params[i]->grad, nullptr), tol)
        << "d_" << cpu_params[i]->name;
}

INSTANTIATE_TEST_SUITE_P(Registered, AttentionCudaParity, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) {
                           std::string name = info.param.spec;
                           std::string out;
                           for (char ch : name)
                             if (std::isalnum(static_cast<unsigned char>(ch))) out += ch;
                           return out + "_" + std::string(core::dtype_name(info.param.dtype)) +
                                  (info.param.padded ? "_padded" : "") + "_" +
                                  std::to_string(info.index);
                         });

}  // namespace
}  // namespace lra::attention
