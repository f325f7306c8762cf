#include "core/optimizer_kernels.h"

#include <cmath>

namespace cmaf::core {

// Two builds of each loop on x86-64, chosen when the program loads: AVX2 where the CPU has it,
// else SSE2. Without "fma" in the target and with -ffp-contract=off (core/CMakeLists.txt),
// both round every operation as the scalar formula does.
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define CMAF_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef CMAF_VECTOR_CLONES
#define CMAF_VECTOR_CLONES
#endif

CMAF_VECTOR_CLONES
void adamw_update(float* __restrict param, const float* __restrict grad, float* __restrict exp_avg,
                  float* __restrict exp_avg_sq, int64_t count, const AdamWCoefficients& c) {
  const AdamWCoefficients k = c;  // locals: the loop does not reload them through a pointer
  for (int64_t i = 0; i < count; ++i) {
    const float g = grad[i];
    const float p = param[i] * k.decay;
    const float m = exp_avg[i] * k.beta1 + k.one_minus_beta1 * g;
    const float v = exp_avg_sq[i] * k.beta2 + k.one_minus_beta2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    param[i] = p + k.neg_step_size * m / (std::sqrt(v) / k.sqrt_bias_correction2 + k.eps);
  }
}

CMAF_VECTOR_CLONES
void sgd_update(float* __restrict param, const float* __restrict grad, float* __restrict momentum_buffer,
                int64_t count, const SgdCoefficients& c) {
  const SgdCoefficients k = c;
  const bool decay = k.weight_decay != 0.0f;  // LibTorch skips the term (0 * inf would be NaN)
  if (momentum_buffer == nullptr) {
    for (int64_t i = 0; i < count; ++i) {
      const float d = decay ? grad[i] + k.weight_decay * param[i] : grad[i];
      param[i] = param[i] + k.neg_lr * d;
    }
    return;
  }
  for (int64_t i = 0; i < count; ++i) {
    const float d = decay ? grad[i] + k.weight_decay * param[i] : grad[i];
    const float buffer = k.first ? d : momentum_buffer[i] * k.momentum + k.one_minus_dampening * d;
    momentum_buffer[i] = buffer;
    param[i] = param[i] + k.neg_lr * (k.nesterov ? d + k.momentum * buffer : buffer);
  }
}

}  // namespace cmaf::core
