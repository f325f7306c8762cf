// Learning rate at a step: linear warm-up over `warmup_steps` (from lr / warmup to lr), then
// poly decay lr * (1 - t / T)^power or cosine lr * (1 + cos(pi t / T)) / 2, where t counts steps
// after the warm-up and T = steps - warmup_steps. A pure function of the step (resume-safe).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/train_config.h"

namespace cmaf::core {

inline double learning_rate(const TrainConfig& c, int64_t step) {
  if (step < c.warmup_steps) return c.lr * static_cast<double>(step + 1) / static_cast<double>(c.warmup_steps);
  const double span = static_cast<double>(std::max<int64_t>(1, c.steps - c.warmup_steps));
  const double t = std::clamp(static_cast<double>(step - c.warmup_steps) / span, 0.0, 1.0);
  if (c.schedule == ScheduleKind::kCosine) return c.lr * 0.5 * (1.0 + std::cos(3.14159265358979323846 * t));
  return c.lr * std::pow(1.0 - t, c.poly_power);
}

}  // namespace cmaf::core
