#include "model/step_count.h"

#include <algorithm>

#include "attention/attention.h"
#include "core/error.h"

namespace lra::model {

double StepCount::flops() const {
  double total = 0;
  for (const auto& op : ops) total += op.runs * op.flops;
  return total;
}

double StepCount::bytes() const {
  double total = 0;
  for (const auto& op : ops) total += op.runs * op.bytes;
  return total;
}

double StepCount::roofline_seconds(double flops_per_s, double bytes_per_s) const {
  LRA_CHECK(flops_per_s > 0 && bytes_per_s > 0,
            "roofline: ceilings must be positive (got {} FLOP/s, {} B/s)", flops_per_s,
            bytes_per_s);
  double total = 0;
  for (const auto& op : ops)
    total += op.runs * std::max(op.flops / flops_per_s, op.bytes / bytes_per_s);
  return total;
}

StepCount training_step_count(const ClassifierConfig& c, int64_t batch, int64_t seq) {
  LRA_CHECK(batch > 0 && seq > 0 && seq <= c.max_len,
            "{}: step count of a batch of {} x {} (max_len {})", c.context, batch, seq, c.max_len);
  const double s = static_cast<double>(core::dtype_size(c.dtype));
  const double id_bytes = 4;  // token ids are int32
  const bool cls = c.pooling == Pooling::cls;
  const bool drop = c.dropout > 0;
  const double B = static_cast<double>(batch);  // examples (head rows)
  const double Bq = B * (c.pairs ? 2 : 1);      // encoder sequences
  const double N = static_cast<double>(seq);    // tokens per sequence
  const double Na = N + (cls ? 1 : 0);          // rows attention sees
  const double T = Bq * N;                      // token rows
  const double R = Bq * Na;                     // encoder rows
  const double C = static_cast<double>(c.dim);
  const double A = static_cast<double>(c.heads * c.head_dim);  // attention width
  const double F = static_cast<double>(c.hidden);
  const double L = static_cast<double>(c.layers);
  const double Hh = static_cast<double>(c.head_hidden);
  const double K = static_cast<double>(c.num_classes);
  const double Ci = (c.pairs ? 4 : 1) * C;  // head input width
  const double V = static_cast<double>(c.vocab);
  const double P_pos = c.learned_positions ? static_cast<double>(c.max_len) * C : 0;

  StepCount out;
  auto add = [&](std::string name, double flops, double bytes, double runs = 1) {
    out.ops.push_back(OpCount{std::move(name), flops, bytes, runs});
  };
  // y[r, o] = x[r, i] W[i, o] + b[o]; backward: dx = dy Wᵀ; dW = xᵀ dy, db = column sums.
  auto linear = [&](const std::string& name, double r, double i, double o, double runs) {
    add(name + " forward", 2 * r * i * o + r * o, s * (r * i + i * o + o + r * o), runs);
    add(name + " backward dx", 2 * r * o * i, s * (r * o + o * i + r * i), runs);
    add(name + " backward dW db", 2 * r * i * o + r * o, s * (r * i + r * o + i * o + o), runs);
  };
  // residual: the backward also reads a residual branch's gradient and adds it into dx.
  auto layer_norm = [&](const std::string& name, double r, double width, double runs,
                        bool residual) {
    // Mean and variance, normalise, scale and shift; the backward's two row reductions.
    add(name + " forward", 8 * r * width, s * (2 * r * width + 2 * width + 2 * r), runs);
    add(name + (residual ? " backward + residual add" : " backward"),
        (residual ? 13 : 12) * r * width,
        s * ((residual ? 4 : 3) * r * width + 2 * r + width + 2 * width), runs);
  };
  auto elementwise = [&](const std::string& name, double elements, double reads, double writes,
                         double flops_per_element, double runs) {
    add(name, flops_per_element * elements, s * elements * (reads + writes), runs);
  };

  // The attention backend of one layer: its cost() and its parameters.
  const attention::AttnShape built{static_cast<int64_t>(Bq), c.heads, c.max_len + (cls ? 1 : 0),
                                   c.head_dim};
  const attention::AttnShape used{static_cast<int64_t>(Bq), c.heads, static_cast<int64_t>(Na),
                                  c.head_dim};
  attention::AttentionOptions options;
  options.dropout = c.attention_dropout;
  options.dtype = c.dtype;
  options.device = c.device;
  options.name_prefix = "layer0.attn.";
  auto backend = attention::make_attention(c.attention, built, options, c.context);
  const attention::Cost attn = backend->cost(used);
  double attn_params = 0;
  for (const auto* p : backend->parameters()) attn_params += static_cast<double>(p->value.numel());

  // Parameters: embeddings, per layer 2 LayerNorms, Wq Wk Wv Wo, the backend's, FFN; the
  // final LayerNorm and the head.
  const double per_layer =
      2 * 2 * C + 3 * (C * A + A) + (A * C + C) + attn_params + (C * F + F) + (F * C + C);
  out.parameters =
      V * C + P_pos + (cls ? C : 0) + L * per_layer + 2 * C + (Ci * Hh + Hh) + (Hh * K + K);
  const double P = out.parameters;

  // ---- forward
  add("embedding + positions forward", T * C, id_bytes * T + s * (T * C + N * C + T * C));
  if (cls) elementwise("cls row forward", R * C, 1, 1, 0, 1);
  if (drop) elementwise("embedding dropout forward", R * C, 1, 1, 1, 1);
  layer_norm("ln1", R, C, L, true);
  linear("wq", R, C, A, L);
  linear("wk", R, C, A, L);
  linear("wv", R, C, A, L);
  const double X = R * A;  // elements of q (= k = v = out)
  add("attention forward", attn.forward_flops, s * (3 * X + R + attn_params + X), L);
  linear("wo", R, A, C, L);
  // Dropout and the residual add are one pass (core::bias_dropout_add).
  elementwise(drop ? "attention-out dropout + residual add forward" : "residual add forward",
              R * C, 2, 1, drop ? 2 : 1, L);
  layer_norm("ln2", R, C, L, true);
  linear("ffn1", R, C, F, L);
  elementwise("gelu forward", R * F, 1, 1, 10, L);
  linear("ffn2", R, F, C, L);
  elementwise(drop ? "ffn dropout + residual add forward" : "residual add (ffn) forward", R * C,
              2, 1, drop ? 2 : 1, L);
  layer_norm("final ln", R, C, 1, false);
  add("pooling forward", R * C, s * (R * C + R + Bq * C));
  if (c.pairs) elementwise("pair features forward", B * C, 2, 4, 2, 1);
  linear("head.fc1", B, Ci, Hh, 1);
  elementwise("head relu forward", B * Hh, 1, 1, 1, 1);
  linear("head.fc2", B, Hh, K, 1);
  add("cross-entropy forward", 5 * B * K, s * (2 * B * K) + id_bytes * B + 8 * 2);
  // ---- backward (the linear() calls above counted each Linear's two backward ops)
  add("cross-entropy backward", 2 * B * K, s * (2 * B * K) + id_bytes * B);
  elementwise("head relu backward", B * Hh, 2, 1, 1, 1);
  if (c.pairs) elementwise("pair features backward", B * C, 6, 2, 4, 1);
  add("pooling backward", R * C, s * (Bq * C + R + R * C));
  // Per layer, reverse order: dropout, GELU, the attention backward and the accumulation of
  // dx from Wq, Wk, Wv (the residual adds are in the LayerNorms' backward, above).
  if (drop) elementwise("ffn dropout backward", R * C, 1, 1, 1, L);
  elementwise("gelu backward", R * F, 2, 1, 20, L);
  if (drop) elementwise("attention-out dropout backward", R * C, 1, 1, 1, L);
  add("attention backward", attn.backward_flops,
      s * (4 * X + R + attn_params + 3 * X + attn_params), L);
  elementwise("dx accumulation (wk, wv)", R * C, 2, 1, 1, 2 * L);
  if (drop) elementwise("embedding dropout backward", R * C, 1, 1, 1, 1);
  if (cls) elementwise("cls row backward", R * C, 1, 1, 1, 1);
  if (c.learned_positions) add("positions backward", T * C, s * (T * C + N * C));
  add("embedding backward", T * C, id_bytes * T + s * (T * C + 2 * V * C));
  // ---- optimizer: zero the gradients, global norm, AdamW (value, gradient, two moments
  // read; value and moments written).
  add("zero gradients", 0, s * P);
  add("gradient norm", 2 * P, s * P);
  add("adamw update", 15 * P, s * 7 * P);

  // ---- memory estimate (lra's implementation; see the header)
  // Dropout masks are drawn where they are applied and never kept.
  const double kept_per_layer = s * (4 * R * C + 4 * X + 2 * R * F + 4 * R) + attn.forward_bytes;
  const double kept_outside = s * (2 * R * C + T * C);
  const double backward_in_flight = attn.backward_bytes + s * (6 * X + 2 * R * F + 3 * R * C);
  out.memory_bytes = 4 * s * P + L * kept_per_layer + kept_outside + backward_in_flight;
  return out;
}

}  // namespace lra::model
