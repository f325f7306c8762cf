#include "datastore/intensity.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "common/error.h"

namespace cmaf::datastore {
namespace {

std::pair<double, double> parse_range(const std::string& text, const std::string& option) {
  std::istringstream in(text);
  double low = 0, high = 0;
  char comma = 0;
  if (!(in >> low >> comma >> high) || comma != ',' || !in.eof() || !(low < high)) {
    throw InputError(option, "", str("'", text, "', expected two numbers low,high with low < high"));
  }
  return {low, high};
}

// Percentile by nth_element on a copy (linear time); p in [0, 100].
double percentile(std::vector<float> values, double p) {
  const double position = p / 100.0 * static_cast<double>(values.size() - 1);
  const auto index = static_cast<size_t>(std::llround(position));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(index), values.end());
  return values[index];
}

void clip_and_scale(std::vector<float>& voxels, double low, double high) {
  const double scale = 1.0 / (high - low);
  for (float& v : voxels) {
    const double clipped = std::clamp(static_cast<double>(v), low, high);
    v = static_cast<float>((clipped - low) * scale);
  }
}

}  // namespace

nlohmann::json IntensityNormalization::to_json() const {
  switch (kind) {
    case Kind::kCtWindow: return {{"kind", "ct-window"}, {"window_hu", {low, high}}};
    case Kind::kMrPercentile: return {{"kind", "mr-percentile"}, {"percentiles", {low, high}}};
    case Kind::kNone: return {{"kind", "none"}};
  }
  return nullptr;
}

IntensityNormalization IntensityNormalization::from_json(const nlohmann::json& json, const std::string& origin) {
  IntensityNormalization n;
  try {
    const std::string kind = json.at("kind").get<std::string>();
    if (kind == "none") {
      n.kind = Kind::kNone;
      return n;
    }
    const char* key = kind == "ct-window" ? "window_hu" : "percentiles";
    if (kind != "ct-window" && kind != "mr-percentile") throw std::runtime_error("unknown kind '" + kind + "'");
    n.kind = kind == "ct-window" ? Kind::kCtWindow : Kind::kMrPercentile;
    n.low = json.at(key).at(0).get<double>();
    n.high = json.at(key).at(1).get<double>();
  } catch (const std::exception& e) {
    throw InputError(origin, "intensity", str(json.dump(), ": ", e.what(),
                                              " (expected {\"kind\": ct-window|mr-percentile|none, ...})"));
  }
  return n;
}

std::string IntensityNormalization::describe() const {
  switch (kind) {
    case Kind::kCtWindow: return str("ct-window [", low, ", ", high, "] HU -> [0, 1]");
    case Kind::kMrPercentile:
      return str("mr-percentile [p", low, ", p", high, "] -> [0, 1]");
    case Kind::kNone: return "none (stored intensities kept)";
  }
  return "";
}

IntensityNormalization parse_intensity_normalization(const std::string& kind,
                                                     const std::string& range,
                                                     const std::string& option) {
  IntensityNormalization how;
  if (kind == "ct-window") {
    how.kind = IntensityNormalization::Kind::kCtWindow;
  } else if (kind == "mr-percentile") {
    how.kind = IntensityNormalization::Kind::kMrPercentile;
    how.low = kDefaultPercentileLow;
    how.high = kDefaultPercentileHigh;
  } else if (kind == "none") {
    how.kind = IntensityNormalization::Kind::kNone;
    return how;
  } else {
    throw InputError(option, "", str("'", kind, "', expected ct-window, mr-percentile or none"));
  }
  if (!range.empty()) std::tie(how.low, how.high) = parse_range(range, option);
  if (how.kind == IntensityNormalization::Kind::kMrPercentile && (how.low < 0 || how.high > 100)) {
    throw InputError(option, "", str("percentiles ", how.low, ",", how.high, ", expected 0..100"));
  }
  return how;
}

void normalize_intensities(std::vector<float>& voxels, const IntensityNormalization& how,
                           const std::string& source) {
  switch (how.kind) {
    case IntensityNormalization::Kind::kNone: return;
    case IntensityNormalization::Kind::kCtWindow: clip_and_scale(voxels, how.low, how.high); return;
    case IntensityNormalization::Kind::kMrPercentile: {
      const double low = percentile(voxels, how.low);
      const double high = percentile(voxels, how.high);
      if (!(low < high)) {
        throw InputError(source, "data",
                         str("percentiles p", how.low, " and p", how.high, " are both ", low,
                             ": too little intensity variation for mr-percentile normalisation"));
      }
      clip_and_scale(voxels, low, high);
      return;
    }
  }
}

}  // namespace cmaf::datastore
