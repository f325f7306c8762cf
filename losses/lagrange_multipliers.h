// The dual variables of LDC: one multiplier per constraint, updated by projected dual ascent
//   lambda_c <- clip(lambda_c + eta * (C_c - eps_c), 0, lambda_max)
// from the globally summed constraint values, in double precision. Identical inputs give
// bit-identical values on every rank (no reductions, no threads, one fixed operation order);
// fingerprint() lets ranks verify that they agree.
//
// The released scalar mode is an equality constraint: lambda <- lambda + eta * g, unprojected
// (kEquality), with eta 0.01 and one value.
//
// The state is part of the training state: to_json/from_json round-trip every double exactly.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace cmaf::losses {

inline constexpr double kDefaultDualStep = 0.1;
inline constexpr double kDefaultTolerance = 0.1;
inline constexpr double kDefaultMultiplierMax = 10.0;
inline constexpr double kReleasedDualStep = 0.01;

enum class ConstraintKind { kInequality, kEquality };

struct MultiplierOptions {
  ConstraintKind kind = ConstraintKind::kInequality;
  double eta = kDefaultDualStep;
  std::vector<double> tolerances;  // eps_c; empty: kDefaultTolerance for every constraint
  double lambda_max = kDefaultMultiplierMax;
  double initial = 0.0;
};

class LagrangeMultipliers {
 public:
  LagrangeMultipliers(int64_t constraints, MultiplierOptions options);
  static LagrangeMultipliers released_scalar();  // equality, eta 0.01, one value

  const std::vector<double>& values() const { return values_; }
  const std::vector<double>& tolerances() const { return options_.tolerances; }
  const MultiplierOptions& options() const { return options_; }
  int64_t updates() const { return updates_; }

  // One dual step from the global constraint values (C_c, or g in the equality mode).
  void update(const std::vector<double>& constraint_values);

  // FNV-1a over the bytes of every value: equal iff the values are bit-identical (up to
  // hash collisions).
  uint64_t fingerprint() const;

  nlohmann::json to_json() const;
  static LagrangeMultipliers from_json(const nlohmann::json& json, const std::string& origin);

 private:
  MultiplierOptions options_;
  std::vector<double> values_;
  int64_t updates_ = 0;
};

}  // namespace cmaf::losses
