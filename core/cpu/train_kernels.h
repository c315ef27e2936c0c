#pragma once
// CPU kernels behind core/ops_train.h (validated and allocated by the dispatching op).
#include <cstdint>
#include <vector>

#include "core/ops_train.h"
#include "core/tensor.h"

namespace lra::core::cpu {

void add_bias_inplace(Tensor& x, const Tensor& bias);
void embedding(const Tensor& table, const std::vector<int32_t>& ids, Tensor& y);
void embedding_backward(const std::vector<int32_t>& ids, const Tensor& dy, Tensor& dtable);
void add_positions(Tensor& x, const Tensor& pos);
void add_positions_backward(const Tensor& dy, Tensor& dpos);
void prepend_row(const Tensor& x, const Tensor& cls, Tensor& y);
void prepend_row_backward(const Tensor& dy, Tensor& dx, Tensor& dcls);
void masked_mean(const Tensor& x, const Tensor& key_mask, Tensor& y);
void masked_mean_backward(const Tensor& dy, const Tensor& key_mask, Tensor& dx);
void pair_features(const Tensor& u, const Tensor& v, Tensor& y);
void pair_features_backward(const Tensor& u, const Tensor& v, const Tensor& dy, Tensor& du,
                            Tensor& dv);
void dropout_keep_mask(double p, uint64_t seed, uint64_t stream, Tensor& mask);
void bias_dropout_add(const Tensor& y, const Tensor& bias, const DropoutDraw& drop,
                      const Tensor& residual, Tensor& out);
void bias_gelu(const Tensor& h, const Tensor& bias, Tensor& g);
void bias_gelu_backward(const Tensor& h, const Tensor& bias, const Tensor& dg, Tensor& dz);
void bias_heads_first(const Tensor& y, const Tensor& bias, Tensor& out);
double cross_entropy(const Tensor& logits, const std::vector<int32_t>& labels, Tensor& probs,
                     int64_t& correct);
void cross_entropy_backward(const Tensor& probs, const std::vector<int32_t>& labels, Tensor& dx);
double sum_squares(const Tensor& x);
void adamw_update(Tensor& w, const Tensor& grad, Tensor& m, Tensor& v, double lr, double beta1,
                  double beta2, double eps, double weight_decay, double grad_scale, int64_t step);

}  // namespace lra::core::cpu
