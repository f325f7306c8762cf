// Segmentation metrics of one label volume against another, per class, in two conventions that
// are reported side by side and labelled:
//
// - "paper" (TransUNet / SSL4MIS calculate_metric_percase, what papers report): Dice and HD95
//   with medpy's definitions in voxel units (spacing ignored); prediction and truth non-empty:
//   (Dice, HD95); prediction non-empty, truth empty: (1, 0); prediction empty: (0, 0).
// - "correct": Dice = 2|P n T| / (|P| + |T|), undefined when both are empty; HD95 and ASSD in mm
//   with the case's spacing, undefined unless both are non-empty. Undefined values are left out
//   of means and counted.
//
// Surfaces as medpy: the voxels of a mask that its 6-connected erosion removes (the volume's
// border counts as background). HD95 = 95th percentile (linear interpolation, numpy's default)
// of the surface distances in both directions; ASSD = mean of the two directed mean surface
// distances. Distances come from the exact Euclidean distance transform, computed inside the
// bounding box of both masks (exact: every surface voxel lies in it).
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cmaf::core {

struct ClassMetrics {
  int label = 0;
  int64_t prediction_voxels = 0;
  int64_t truth_voxels = 0;
  // Correct convention (nullopt = undefined).
  std::optional<double> dice;
  std::optional<double> hd95_mm;
  std::optional<double> assd_mm;
  double prediction_ml = 0.0;
  double truth_ml = 0.0;
  std::optional<double> volume_difference;  // (|P| - |T|) / |T|, undefined for an empty truth
  // Paper convention (always defined).
  double paper_dice = 0.0;
  double paper_hd95_voxels = 0.0;
};

// pred and truth: D x H x W label ids; spacing (z, y, x) mm.
std::vector<ClassMetrics> case_metrics(const std::vector<uint8_t>& prediction, const std::vector<uint8_t>& truth,
                                       std::array<int64_t, 3> shape, std::array<double, 3> spacing,
                                       const std::vector<int>& labels);

struct CaseResult {
  std::string case_id;
  std::string site;
  std::vector<ClassMetrics> classes;
};

// Means per class, per case and per site in both conventions, with counts of undefined values;
// `class_names[label]` names the columns.
nlohmann::json summarize(const std::vector<CaseResult>& cases, const std::vector<std::string>& class_names);

// STEM.json (cases + summary), STEM.csv (one row per case x class) and STEM.md (the papers'
// table: organ columns, mean Dice and HD95, both conventions); `json_path` ends in .json.
void write_metric_reports(const std::string& json_path, const std::vector<CaseResult>& cases,
                          const std::vector<std::string>& class_names, const nlohmann::json& extra);

}  // namespace cmaf::core
