// The training state that is not a tensor archive: saved as `state.json` in every checkpoint
// and restored as a unit (with model.pt, teacher.pt, projection_head.pt, optimizer.pt and the
// per-rank RNG parts). The sampler and loader positions are pure functions of `step`.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "losses/lagrange_multipliers.h"

namespace cmaf::core {

struct TrainingState {
  int64_t step = 0;  // optimizer steps completed (skipped non-finite steps included)
  int64_t skipped_steps = 0;
  losses::LagrangeMultipliers multipliers{1, losses::MultiplierOptions{}};
  double best_val_mean_dice = -1.0;
  int64_t best_step = -1;
  int64_t pool_version = 0;  // the published pseudo-label pool version in use (0: no pool)

  nlohmann::json to_json() const;
  static TrainingState from_json(const nlohmann::json& json, const std::string& origin);
};

}  // namespace cmaf::core
