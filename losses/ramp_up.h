// Weight ramp-up of the unlabeled terms (LDC and contrastive) over the first training steps:
// the sigmoid-shaped schedule of mean-teacher / SSL4MIS, w(t) = exp(-5 (1 - t / T)^2) for
// t < T, 1 afterwards (at t = 0 it is exp(-5) = 0.0067). Total loss:
//   L = L_sup + w(t) * (sum_c lambda_c (C_c - eps_c) + w_con * L_contrastive).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace cmaf::losses {

inline double sigmoid_ramp_up(int64_t step, int64_t ramp_steps) {
  if (ramp_steps <= 0 || step >= ramp_steps) return 1.0;
  const double phase = 1.0 - std::clamp(static_cast<double>(step) / static_cast<double>(ramp_steps), 0.0, 1.0);
  return std::exp(-5.0 * phase * phase);
}

// The same with the unlabeled terms switched on at step `start` (train --unlabeled-start-step):
// 0 before it, then the ramp counted from it.
inline double delayed_ramp_up(int64_t step, int64_t start, int64_t ramp_steps) {
  return step < start ? 0.0 : sigmoid_ramp_up(step - start, ramp_steps);
}

}  // namespace cmaf::losses
