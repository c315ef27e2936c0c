// Validation, output allocation and device dispatch for the ops of core/ops_random.h.
#include "core/ops_random.h"

#include <cmath>

#include "core/cpu/random_kernels.h"
#include "core/op_checks.h"
#ifdef LRA_WITH_CUDA
#include "core/cuda/random_kernels.h"
#endif

namespace lra::core {
namespace {


// Runs the kernel of `device`; a build without CUDA names the op in its error.
#ifdef LRA_WITH_CUDA
#define LRA_RUN_RANDOM(op, device, fn, ...) \
  ((device) == Device::cuda ? cuda::fn(__VA_ARGS__) : cpu::fn(__VA_ARGS__))
#else
#define LRA_RUN_RANDOM(op, device, fn, ...) \
  ((device) == Device::cuda ? fail_no_cuda(op) : cpu::fn(__VA_ARGS__))
#endif


// Ops told their output device: every defined input must already live there.
void require_on(const char* op, Device device, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors)
    LRA_CHECK(!t->defined() || t->device() == device,
              "{}: output requested on {}, but an input ({}) lives on {} — copy it first", op,
              device_name(device), t->shape_str(), device_name(t->device()));
#ifndef LRA_WITH_CUDA
  if (device == Device::cuda) fail_no_cuda(op);
#endif
}

void check_rank4(const char* op, const Tensor& t, const char* what) {
  LRA_CHECK(t.defined() && t.rank() == 4, "{}: {} must be [B, H, N, C], got {}", op, what,
            t.defined() ? t.shape_str() : std::string("undefined"));
}

// index (and w when defined) are [B, H, S] over x [B, H, N, C] with integer rows in [0, N).
void check_index(const char* op, const Tensor& x, const Tensor& index, const Tensor& w) {
  LRA_CHECK(index.rank() == 3 && index.dim(0) == x.dim(0) && index.dim(1) == x.dim(1),
            "{}: index {} does not match [B, H, S] for x {}", op, index.shape_str(), x.shape_str());
  LRA_CHECK(!w.defined() || w.shape() == index.shape(), "{}: weights {} differ from index {}", op,
            w.shape_str(), index.shape_str());
  // Device indices are copied to the host for this check (B*H*S values, one sync).
  std::vector<double> idx = index.to_vector();
  for (std::size_t i = 0; i < idx.size(); ++i) {
    double r = idx[i];
    LRA_CHECK(r >= 0 && r < static_cast<double>(x.dim(2)) && r == std::floor(r),
              "{}: index {} at slot {} is not a row of x {}", op, r, i, x.shape_str());
  }
}

}  // namespace

Tensor orthogonal_gaussian(int64_t rows, int64_t dim, uint64_t seed, DType dtype, Device device) {
  LRA_CHECK(rows >= 1 && dim >= 1, "orthogonal_gaussian: rows {} and dim {} must be >= 1", rows,
            dim);
  // Host Gram-Schmidt, then one explicit copy (core/cuda/random_kernels.h says why).
  std::vector<double> values = cpu::orthogonal_gaussian(rows, dim, seed);
  Tensor w = Tensor::from_values(Shape{rows, dim}, values, dtype);
  if (device == Device::cpu) return w;
  require_on("orthogonal_gaussian", device, {});
  return w.to(device);
}

Tensor favor_exp_features(const Tensor& u, const Tensor& x, const Tensor& key_mask,
                          bool per_sequence) {
  check_rank4("favor_exp_features", u, "u");
  check_rank4("favor_exp_features", x, "x");
  LRA_CHECK(u.dim(0) == x.dim(0) && u.dim(1) == x.dim(1) && u.dim(2) == x.dim(2),
            "favor_exp_features: u {} and x {} differ in [B, H, N]", u.shape_str(), x.shape_str());
  check_same_dtype(u, x, "favor_exp_features");
  check_key_mask("favor_exp_features", key_mask, u.dim(0), u.dim(2));
  Device dev = one_device("favor_exp_features", {&u, &x, &key_mask});
  Tensor phi = Tensor::empty(u.shape(), u.dtype(), u.device());
  if (u.numel() > 0)
    LRA_RUN_RANDOM("favor_exp_features", dev, favor_exp_features, u, x, key_mask, per_sequence, phi);
  return phi;
}

Tensor relu_features(const Tensor& u, double eps, const Tensor& key_mask) {
  check_rank4("relu_features", u, "u");
  check_key_mask("relu_features", key_mask, u.dim(0), u.dim(2));
  Device dev = one_device("relu_features", {&u, &key_mask});
  Tensor phi = Tensor::empty(u.shape(), u.dtype(), u.device());
  if (u.numel() > 0) LRA_RUN_RANDOM("relu_features", dev, relu_features, u, eps, key_mask, phi);
  return phi;
}

Tensor relu_features_backward(const Tensor& u, const Tensor& d_phi, const Tensor& key_mask) {
  check_rank4("relu_features_backward", u, "u");
  check_same_shape(u, d_phi, "relu_features_backward");
  check_same_dtype(u, d_phi, "relu_features_backward");
  check_key_mask("relu_features_backward", key_mask, u.dim(0), u.dim(2));
  Device dev = one_device("relu_features_backward", {&u, &d_phi, &key_mask});
  Tensor du = Tensor::empty(u.shape(), u.dtype(), u.device());
  if (u.numel() > 0)
    LRA_RUN_RANDOM("relu_features_backward", dev, relu_features_backward, u, d_phi, key_mask, du);
  return du;
}

Tensor safe_reciprocal(const Tensor& x) {
  LRA_CHECK(x.defined(), "safe_reciprocal: tensor is undefined");
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  LRA_RUN_RANDOM("safe_reciprocal", x.device(), safe_reciprocal, x, y);
  return y;
}

namespace {
IndexSample make_sample(int64_t batch, int64_t heads, int64_t samples, Device device) {
  Shape s{batch, heads, samples};
  return {Tensor::zeros(s, DType::f64, device), Tensor::zeros(s, DType::f64, device),
          Tensor::zeros(s, DType::f64, device)};
}
}  // namespace

IndexSample sample_rows_uniform(int64_t batch, int64_t heads, int64_t seq, int64_t samples,
                                const Tensor& key_mask, uint64_t seed, Device device) {
  LRA_CHECK(batch >= 1 && heads >= 1 && seq >= 1 && samples >= 1,
            "sample_rows_uniform: sizes must be >= 1 (batch {}, heads {}, seq {}, samples {})",
            batch, heads, seq, samples);
  check_key_mask("sample_rows_uniform", key_mask, batch, seq);
  require_on("sample_rows_uniform", device, {&key_mask});
  IndexSample out = make_sample(batch, heads, samples, device);
  LRA_RUN_RANDOM("sample_rows_uniform", device, sample_rows_uniform, batch, heads, seq, samples,
                 key_mask, seed, out);
  return out;
}

IndexSample sample_columns(const Tensor& weight, double power, int64_t batch, int64_t heads,
                           int64_t seq, int64_t samples, const Tensor& key_mask, uint64_t seed,
                           Device device) {
  LRA_CHECK(batch >= 1 && heads >= 1 && seq >= 1 && samples >= 1,
            "sample_columns: sizes must be >= 1 (batch {}, heads {}, seq {}, samples {})", batch,
            heads, seq, samples);
  LRA_CHECK(!weight.defined() || weight.numel() == batch * heads * seq,
            "sample_columns: weight {} is not [{}, {}, {}]", weight.shape_str(), batch, heads, seq);
  check_key_mask("sample_columns", key_mask, batch, seq);
  require_on("sample_columns", device, {&weight, &key_mask});
  if (device == Device::cpu) {
    IndexSample out = make_sample(batch, heads, samples, device);
    cpu::sample_columns(weight, power, batch, heads, seq, samples, key_mask, seed, out);
    return out;
  }
  // Device tensors: the draw runs on the host with explicit copies both ways (see
  // core/cuda/random_kernels.h), so it is the CPU's draw exactly.
  Tensor host_weight = weight.defined() ? weight.to(Device::cpu) : Tensor();
  Tensor host_mask = key_mask.defined() ? key_mask.to(Device::cpu) : Tensor();
  IndexSample host = make_sample(batch, heads, samples, Device::cpu);
  cpu::sample_columns(host_weight, power, batch, heads, seq, samples, host_mask, seed, host);
  return {host.index.to(device), host.valid.to(device), host.owner.to(device)};
}

Tensor gather_rows(const Tensor& x, const Tensor& index, const Tensor& w) {
  check_rank4("gather_rows", x, "x");
  check_index("gather_rows", x, index, w);
  Device dev = one_device("gather_rows", {&x, &index, &w});
  Tensor out =
      Tensor::empty(Shape{x.dim(0), x.dim(1), index.dim(2), x.dim(3)}, x.dtype(), x.device());
  if (out.numel() > 0) LRA_RUN_RANDOM("gather_rows", dev, gather_rows, x, index, w, out);
  return out;
}

void scatter_rows(Tensor& x, const Tensor& index, const Tensor& w, const Tensor& src,
                  ScatterMode mode) {
  check_rank4("scatter_rows", x, "x");
  check_index("scatter_rows", x, index, w);
  if (mode != ScatterMode::zero) {
    LRA_CHECK(src.defined() && src.rank() == 4 && src.dim(0) == x.dim(0) &&
                  src.dim(1) == x.dim(1) && src.dim(2) == index.dim(2) && src.dim(3) == x.dim(3),
              "scatter_rows: src {} is not [B, H, S, C] for x {} and index {}", src.shape_str(),
              x.shape_str(), index.shape_str());
    check_same_dtype(x, src, "scatter_rows");
  }
  Device dev = one_device("scatter_rows", {&x, &index, &w, &src});
  if (x.numel() > 0) LRA_RUN_RANDOM("scatter_rows", dev, scatter_rows, x, index, w, src, mode);
}

Tensor expand_key_mask(const Tensor& key_mask, int64_t batch, int64_t heads, int64_t seq,
                       DType dtype, Device device) {
  check_key_mask("expand_key_mask", key_mask, batch, seq);
  require_on("expand_key_mask", device, {&key_mask});
  Tensor out = Tensor::empty(Shape{batch, heads, 1, seq}, dtype, device);
  LRA_RUN_RANDOM("expand_key_mask", device, expand_key_mask, key_mask, heads, out);
  return out;
}

SkeinWeights skein_weights(const Tensor& logits, const Tensor& valid, const Tensor& key_mask,
                           SkeinNorm mode, const Tensor& lse) {
  check_rank4("skein_weights", logits, "logits");
  LRA_CHECK(valid.rank() == 3 && valid.dim(0) == logits.dim(0) && valid.dim(1) == logits.dim(1) &&
                valid.dim(2) == logits.dim(3),
            "skein_weights: valid {} is not [B, H, S] for logits {}", valid.shape_str(),
            logits.shape_str());
  check_key_mask("skein_weights", key_mask, logits.dim(0), logits.dim(2));
  Shape rows{logits.dim(0), logits.dim(1), logits.dim(2)};
  if (mode == SkeinNorm::exact) {
    LRA_CHECK(lse.defined() && lse.shape() == rows,
              "skein_weights: exact mode needs lse {}, got {}", rows.str(),
              lse.defined() ? lse.shape_str() : std::string("undefined"));
    check_same_dtype(logits, lse, "skein_weights");
  }
  Device dev = one_device("skein_weights", {&logits, &valid, &key_mask, &lse});
  SkeinWeights w{Tensor::empty(logits.shape(), logits.dtype(), logits.device()),
                 Tensor::empty(rows, logits.dtype(), logits.device()),
                 Tensor::empty(rows, logits.dtype(), logits.device())};
  if (logits.numel() > 0 || w.g.numel() > 0) {
    if (logits.dim(3) == 0) {
      w.g.fill(0.0);
      w.dhat.fill(0.0);
    } else {
      LRA_RUN_RANDOM("skein_weights", dev, skein_weights, logits, valid, key_mask, mode, lse, w);
    }
  }
  return w;
}

Tensor skein_weights_backward(const SkeinWeights& w, const Tensor& valid, const Tensor& key_mask,
                              SkeinNorm mode, const Tensor& d_e, const Tensor& d_dhat,
                              const Tensor& d_g) {
  check_rank4("skein_weights_backward", w.e, "E");
  check_same_shape(w.e, d_e, "skein_weights_backward (dE)");
  check_same_dtype(w.e, d_e, "skein_weights_backward (dE)");
  if (d_dhat.defined()) check_same_shape(w.dhat, d_dhat, "skein_weights_backward (d_dhat)");
  if (d_g.defined()) check_same_shape(w.g, d_g, "skein_weights_backward (dg)");
  check_key_mask("skein_weights_backward", key_mask, w.e.dim(0), w.e.dim(2));
  Device dev =
      one_device("skein_weights_backward", {&w.e, &w.g, &valid, &key_mask, &d_e, &d_dhat, &d_g});
  Tensor dl = Tensor::empty(w.e.shape(), w.e.dtype(), w.e.device());
  if (dl.numel() > 0)
    LRA_RUN_RANDOM("skein_weights_backward", dev, skein_weights_backward, w, valid, key_mask, mode,
                   d_e, d_dhat, d_g, dl);
  return dl;
}

Tensor masked_logsumexp(const Tensor& q, const Tensor& k, const Tensor& key_mask, double scale) {
  check_rank4("masked_logsumexp", q, "q");
  check_same_shape(q, k, "masked_logsumexp");
  check_same_dtype(q, k, "masked_logsumexp");
  check_key_mask("masked_logsumexp", key_mask, q.dim(0), q.dim(2));
  Device dev = one_device("masked_logsumexp", {&q, &k, &key_mask});
  Tensor lse = Tensor::empty(Shape{q.dim(0), q.dim(1), q.dim(2)}, q.dtype(), q.device());
  if (lse.numel() > 0)
    LRA_RUN_RANDOM("masked_logsumexp", dev, masked_logsumexp, q, k, key_mask, scale, lse);
  return lse;
}

void masked_logsumexp_backward(const Tensor& q, const Tensor& k, const Tensor& key_mask,
                               double scale, const Tensor& lse, const Tensor& d_lse, Tensor& d_q,
                               Tensor& d_k) {
  check_rank4("masked_logsumexp_backward", q, "q");
  check_same_shape(q, k, "masked_logsumexp_backward");
  check_same_shape(q, d_q, "masked_logsumexp_backward (d_q)");
  check_same_shape(k, d_k, "masked_logsumexp_backward (d_k)");
  check_same_shape(lse, d_lse, "masked_logsumexp_backward (d_lse)");
  check_key_mask("masked_logsumexp_backward", key_mask, q.dim(0), q.dim(2));
  Device dev =
      one_device("masked_logsumexp_backward", {&q, &k, &key_mask, &lse, &d_lse, &d_q, &d_k});
  if (lse.numel() > 0)
    LRA_RUN_RANDOM("masked_logsumexp_backward", dev, masked_logsumexp_backward, q, k, key_mask,
                   scale, lse, d_lse, d_q, d_k);
}

}  // namespace lra::core
