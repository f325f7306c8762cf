#include "core/training_log.h"

#include <glog/logging.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/error.h"

namespace cmaf::core {

TrainingLog::TrainingLog(std::string run_dir, bool coordinator)
    : path_((std::filesystem::path(run_dir) / "metrics.jsonl").string()), coordinator_(coordinator) {}

void TrainingLog::append(const nlohmann::json& line) const {
  if (!coordinator_) return;
  std::ofstream out(path_, std::ios::app);
  out << line.dump() << "\n";
  if (!out) throw IoError(str("cannot append to ", path_));
}

void TrainingLog::step(const StepReport& r) {
  if (!coordinator_) return;
  const double* v = r.sums;
  const double n = r.world_size;
  nlohmann::json constraints = nlohmann::json::array();
  for (size_t c = 0; c < r.constraints.size(); ++c) {
    const bool active = c >= r.constraint_active.size() || r.constraint_active[c] != 0;
    constraints.push_back(active ? nlohmann::json(r.constraints[c]) : nlohmann::json(nullptr));
  }
  nlohmann::json line = {{"step", r.step},
                        {"epoch", r.epoch},
                        {"lr", r.lr},
                        {"ramp", r.ramp},
                        {"loss",
                         {{"total", v[kTotal] / n},
                          {"supervised", v[kSupervised] / n},
                          {"cross_entropy", v[kCrossEntropy] / n},
                          {"dice", v[kDice] / n},
                          {"ldc", v[kLdc] / n},
                          {"contrastive", v[kContrastive] / n}}},
                        {"multipliers", r.multipliers},
                        {"constraints", constraints},
                        {"confident_fraction", v[kConfident] / n},
                        {"images_per_s", r.images_per_second},
                        {"skipped_steps", r.skipped_steps}};
  if (!r.pace.is_null()) line["pace"] = r.pace;
  append(line);
  const double eta =
      r.steps_per_second > 0 ? static_cast<double>(r.total_steps - r.step) / r.steps_per_second : 0.0;
  char text[256];
  std::snprintf(text, sizeof(text), "step %lld/%lld  %.2f img/s  ETA %s  loss %.4f (sup %.4f ldc %.4f con %.4f)",
                static_cast<long long>(r.step), static_cast<long long>(r.total_steps), r.images_per_second,
                format_duration(eta).c_str(), v[kTotal] / n, v[kSupervised] / n, v[kLdc] / n, v[kContrastive] / n);
  progress_line_.update(r.step, r.total_steps, text);
}

void TrainingLog::validation(int64_t step, const ValidationResult& r, const std::vector<std::string>& classes) const {
  if (!coordinator_) return;
  nlohmann::json dice = nlohmann::json::object();
  for (size_t c = 0; c < r.dice.size(); ++c) {
    dice[classes[c + 1]] = std::isnan(r.dice[c]) ? nlohmann::json(nullptr) : nlohmann::json(r.dice[c]);
  }
  nlohmann::json sites = nlohmann::json::object();
  for (const auto& [site, mean] : r.site_mean_dice) sites[site] = mean;
  append({{"step", step}, {"val_slices", r.slices}, {"val_dice", dice}, {"val_mean_dice", r.mean_dice},
          {"val_site_mean_dice", sites}});
  LOG(INFO) << "step " << step << ": val mean Dice " << r.mean_dice << " over " << r.slices << " slices";
}

}  // namespace cmaf::core
