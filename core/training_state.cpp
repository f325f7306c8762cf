#include "core/training_state.h"

#include "common/error.h"

namespace cmaf::core {

nlohmann::json TrainingState::to_json() const {
  return {{"step", step},
          {"skipped_steps", skipped_steps},
          {"multipliers", multipliers.to_json()},
          {"best_val_mean_dice", best_val_mean_dice},
          {"best_step", best_step},
          {"pool_version", pool_version}};
}

TrainingState TrainingState::from_json(const nlohmann::json& json, const std::string& origin) {
  TrainingState s;
  try {
    s.step = json.at("step").get<int64_t>();
    s.skipped_steps = json.at("skipped_steps").get<int64_t>();
    s.multipliers = losses::LagrangeMultipliers::from_json(json.at("multipliers"), origin);
    s.best_val_mean_dice = json.at("best_val_mean_dice").get<double>();
    s.best_step = json.at("best_step").get<int64_t>();
    s.pool_version = json.at("pool_version").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    throw InputError(origin, "state", e.what());
  }
  if (s.step < 0) throw InputError(origin, "state.step", str(s.step, ", expected >= 0"));
  return s;
}

}  // namespace cmaf::core
