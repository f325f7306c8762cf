// Intensity preprocessing applied by `prep` (and by inference, read back from the dataset).
//   ct-window      clip to [low, high] HU, then scale to [0, 1] (TransUNet's Synapse recipe)
//   mr-percentile  clip to the [p_low, p_high] percentiles of the volume, then scale to [0, 1]
//   none           keep stored values (inputs that are already preprocessed)
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace cmaf::datastore {

inline constexpr double kDefaultCtWindowLow = -125.0;
inline constexpr double kDefaultCtWindowHigh = 275.0;
inline constexpr double kDefaultPercentileLow = 0.5;
inline constexpr double kDefaultPercentileHigh = 99.5;

struct IntensityNormalization {
  enum class Kind { kCtWindow, kMrPercentile, kNone };
  Kind kind = Kind::kCtWindow;
  double low = kDefaultCtWindowLow;  // HU for ct-window, percent for mr-percentile
  double high = kDefaultCtWindowHigh;

  nlohmann::json to_json() const;
  // Inverse of to_json; errors name `origin` and the key.
  static IntensityNormalization from_json(const nlohmann::json& json, const std::string& origin);
  std::string describe() const;  // "ct-window [-125, 275] HU -> [0, 1]"
};

// `kind` is ct-window | mr-percentile | none; `range` is "low,high" (empty: the default).
// Errors name `option` (the command-line option) and what was expected.
IntensityNormalization parse_intensity_normalization(const std::string& kind,
                                                     const std::string& range,
                                                     const std::string& option);

// In place. `source` names the file in errors (e.g. a volume whose percentiles coincide).
void normalize_intensities(std::vector<float>& voxels, const IntensityNormalization& how,
                           const std::string& source);

}  // namespace cmaf::datastore
