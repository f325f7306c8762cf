#include "losses/lagrange_multipliers.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/error.h"
#include "common/fingerprint.h"

namespace cmaf::losses {
namespace {

// Doubles as their exact bit patterns (JSON number printing is not a promise of bit-exactness).
std::vector<uint64_t> bits_of(const std::vector<double>& values) {
  std::vector<uint64_t> bits(values.size());
  std::memcpy(bits.data(), values.data(), values.size() * sizeof(double));
  return bits;
}

std::vector<double> doubles_of(const std::vector<uint64_t>& bits) {
  std::vector<double> values(bits.size());
  std::memcpy(values.data(), bits.data(), bits.size() * sizeof(double));
  return values;
}

}  // namespace

LagrangeMultipliers::LagrangeMultipliers(int64_t constraints, MultiplierOptions options)
    : options_(std::move(options)) {
  if (constraints < 1) throw InputError("multipliers", "constraints", str(constraints, ", expected >= 1"));
  if (options_.tolerances.empty()) options_.tolerances.assign(static_cast<size_t>(constraints), kDefaultTolerance);
  if (static_cast<int64_t>(options_.tolerances.size()) != constraints) {
    throw InputError("multipliers", "tolerances",
                     str(options_.tolerances.size(), " values, expected one per constraint (", constraints, ")"));
  }
  if (!(options_.eta > 0.0) || !(options_.lambda_max > 0.0) || !std::isfinite(options_.lambda_max)) {
    throw InputError("multipliers", "eta / lambda_max", "expected positive finite values");
  }
  values_.assign(static_cast<size_t>(constraints), options_.initial);
}

LagrangeMultipliers LagrangeMultipliers::released_scalar() {
  MultiplierOptions options;
  options.kind = ConstraintKind::kEquality;
  options.eta = kReleasedDualStep;
  options.tolerances = {0.0};
  return LagrangeMultipliers(1, options);
}

void LagrangeMultipliers::update(const std::vector<double>& constraint_values) {
  CMAF_CHECK_EQ(constraint_values.size(), values_.size(), "one constraint value per multiplier");
  for (size_t c = 0; c < values_.size(); ++c) {
    if (!std::isfinite(constraint_values[c])) {
      throw InternalError(str("LDC constraint ", c, " is ", constraint_values[c],
                              ": multipliers are not updated from non-finite statistics"));
    }
    const double stepped = values_[c] + options_.eta * (constraint_values[c] - options_.tolerances[c]);
    values_[c] = options_.kind == ConstraintKind::kEquality
                     ? stepped
                     : std::clamp(stepped, 0.0, options_.lambda_max);
  }
  ++updates_;
}

uint64_t LagrangeMultipliers::fingerprint() const {
  return fnv1a(values_.data(), values_.size() * sizeof(double));
}

nlohmann::json LagrangeMultipliers::to_json() const {
  return {{"kind", options_.kind == ConstraintKind::kEquality ? "equality" : "inequality"},
          {"eta", options_.eta},
          {"lambda_max", options_.lambda_max},
          {"initial", options_.initial},
          {"tolerances_bits", bits_of(options_.tolerances)},
          {"values_bits", bits_of(values_)},
          {"values", values_},  // readable copy; the bits are authoritative
          {"updates", updates_}};
}

LagrangeMultipliers LagrangeMultipliers::from_json(const nlohmann::json& j, const std::string& origin) {
  try {
    MultiplierOptions options;
    options.kind = j.at("kind").get<std::string>() == "equality" ? ConstraintKind::kEquality
                                                                  : ConstraintKind::kInequality;
    options.eta = j.at("eta").get<double>();
    options.lambda_max = j.at("lambda_max").get<double>();
    options.initial = j.at("initial").get<double>();
    options.tolerances = doubles_of(j.at("tolerances_bits").get<std::vector<uint64_t>>());
    const std::vector<double> values = doubles_of(j.at("values_bits").get<std::vector<uint64_t>>());
    LagrangeMultipliers multipliers(static_cast<int64_t>(values.size()), options);
    multipliers.values_ = values;
    multipliers.updates_ = j.at("updates").get<int64_t>();
    return multipliers;
  } catch (const nlohmann::json::exception& e) {
    throw InputError(origin, "lagrange_multipliers", str("not a multiplier state: ", e.what()));
  }
}

}  // namespace cmaf::losses
