// What rank 0 reports while training: one JSON line per logged step, validation and pool
// version in `<run-dir>/metrics.jsonl` (docs/metrics.md), and the progress line on stdout.
// The other ranks hold a TrainingLog too; every call is a no-op there.
//
// StepSlot is the layout of the per-step all-reduce (sum over ranks and micro-batches): the
// non-finite flags and the stop request first, then the loss terms the log reports.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "core/progress_line.h"
#include "core/validation.h"

namespace cmaf::core {

enum StepSlot : int64_t {
  kBadSupervised, kBadLdc, kBadContrastive, kBadGradient, kStop,
  kTotal, kSupervised, kCrossEntropy, kDice, kLdc, kContrastive, kConfident, kSlotCount
};

struct StepReport {
  int64_t step = 0;         // steps completed
  int64_t epoch = 0;
  int64_t total_steps = 0;
  double lr = 0.0;
  double ramp = 0.0;
  const double* sums = nullptr;  // kSlotCount values summed over `world_size` ranks
  int world_size = 1;
  std::vector<double> multipliers;
  std::vector<double> constraints;
  std::vector<uint8_t> constraint_active;  // inactive constraints are logged as null
  int64_t skipped_steps = 0;
  double images_per_second = 0.0;
  double steps_per_second = 0.0;
  nlohmann::json pace;  // several ranks: PaceReport::to_json() of the window; null: none
};

class TrainingLog {
 public:
  TrainingLog(std::string run_dir, bool coordinator);

  // Appends one line to metrics.jsonl (throws IoError naming the file when it cannot).
  void append(const nlohmann::json& line) const;
  // The step's metrics line and the progress line.
  void step(const StepReport& report);
  // The validation line (Dice per class name, NaN as null) and an INFO log line.
  void validation(int64_t step, const ValidationResult& result, const std::vector<std::string>& classes) const;
  void finish() { progress_line_.finish(); }

 private:
  std::string path_;
  bool coordinator_;
  ProgressLine progress_line_ = ProgressLine::for_stdout();
};

}  // namespace cmaf::core
