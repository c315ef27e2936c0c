#pragma once
// CPU kernels behind core/ops_random.h. Inputs are validated and outputs allocated by the
// dispatching op; these only compute, deterministically for any thread count.
#include <cstdint>
#include <vector>

#include "core/ops_random.h"

namespace lra::core::cpu {

// Projection rows (row-major rows x dim, double).
std::vector<double> orthogonal_gaussian(int64_t rows, int64_t dim, uint64_t seed);

void favor_exp_features(const Tensor& u, const Tensor& x, const Tensor& key_mask, bool per_sequence,
                        Tensor& phi);
void relu_features(const Tensor& u, double eps, const Tensor& key_mask, Tensor& phi);
void relu_features_backward(const Tensor& u, const Tensor& d_phi, const Tensor& key_mask,
                            Tensor& du);
void safe_reciprocal(const Tensor& x, Tensor& y);

void sample_rows_uniform(int64_t batch, int64_t heads, int64_t seq, int64_t samples,
                         const Tensor& key_mask, uint64_t seed, IndexSample& out);
void sample_columns(const Tensor& weight, double power, int64_t batch, int64_t heads, int64_t seq,
                    int64_t samples, const Tensor& key_mask, uint64_t seed, IndexSample& out);

void gather_rows(const Tensor& x, const Tensor& index, const Tensor& w, Tensor& out);
void scatter_rows(Tensor& x, const Tensor& index, const Tensor& w, const Tensor& src,
                  ScatterMode mode);
void expand_key_mask(const Tensor& key_mask, int64_t heads, Tensor& out);

void skein_weights(const Tensor& logits, const Tensor& valid, const Tensor& key_mask,
                   SkeinNorm mode, const Tensor& lse, SkeinWeights& out);
void skein_weights_backward(const SkeinWeights& w, const Tensor& valid, const Tensor& key_mask,
                            SkeinNorm mode, const Tensor& d_e, const Tensor& d_dhat,
                            const Tensor& d_g, Tensor& d_logits);

void masked_logsumexp(const Tensor& q, const Tensor& k, const Tensor& key_mask, double scale,
                      Tensor& lse);
void masked_logsumexp_backward(const Tensor& q, const Tensor& k, const Tensor& key_mask,
                               double scale, const Tensor& lse, const Tensor& d_lse, Tensor& d_q,
                               Tensor& d_k);

}  // namespace lra::core::cpu
