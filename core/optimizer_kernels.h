// The per-element loops of FusedAdamW and FusedSgd (core/fused_optimizer.h), on flat float32
// arrays. Kept apart from LibTorch so that this file alone is compiled with -fno-math-errno (sqrt
// vectorises) and -ffp-contract=off (no multiply-add fused behind the formula's back). On x86-64
// each loop is built twice, AVX2 and SSE2, chosen when the program loads; neither uses FMA, so
// both give the bits of the scalar formulas below, on any CPU.
#pragma once

#include <cstdint>

namespace cmaf::core {

// For i in [0, count), each operation rounded to float32 once, in this order:
//   p = param[i] * decay
//   m = exp_avg[i] * beta1 + one_minus_beta1 * g           (exp_avg[i] = m)
//   v = exp_avg_sq[i] * beta2 + (one_minus_beta2 * g) * g  (exp_avg_sq[i] = v)
//   param[i] = p + (neg_step_size * m) / (sqrt(v) / sqrt_bias_correction2 + eps)
struct AdamWCoefficients {
  float decay = 1.0f;          // 1 - lr * weight_decay
  float beta1 = 0.9f;
  float one_minus_beta1 = 0.1f;
  float beta2 = 0.999f;
  float one_minus_beta2 = 0.001f;
  float sqrt_bias_correction2 = 1.0f;
  float eps = 1e-8f;
  float neg_step_size = -1e-3f;  // -lr / bias_correction1
};
void adamw_update(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t count,
                  const AdamWCoefficients& c);

// For i in [0, count):
//   d = grad[i] + weight_decay * param[i]   (d = grad[i] when weight_decay is 0)
//   b = first ? d : momentum_buffer[i] * momentum + one_minus_dampening * d  (momentum_buffer[i] = b)
//   param[i] = param[i] + neg_lr * (nesterov ? d + momentum * b : b)
// Without a momentum buffer (null: no momentum): param[i] = param[i] + neg_lr * d.
struct SgdCoefficients {
  float weight_decay = 0.0f;
  float momentum = 0.0f;
  float one_minus_dampening = 1.0f;
  bool nesterov = false;
  bool first = false;  // the momentum buffer starts as the first step's d
  float neg_lr = -1e-3f;
};
void sgd_update(float* param, const float* grad, float* momentum_buffer, int64_t count, const SgdCoefficients& c);

}  // namespace cmaf::core
