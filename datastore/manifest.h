// The dataset manifest: `<dataset>/manifest.json`, the index every later stage reads.
//
// {
//   "format": "cmaformer-dataset", "format_version": 1,
//   "classes": ["background", "aorta", ...],              // label id = index
//   "sites": [{"name", "source", "preprocessing", "created"}],
//   "generator": {...},                                    // synth parameters, if synthetic
//   "cases": [{"id", "file", "site", "split", "labeled", "has_label", "slices",
//              "shape" [D,H,W], "spacing" [z,y,x], "class_voxels" [...], "class_slices" [...],
//              "source"}]
// }
// `labeled`: training may read the label (train split only). `has_label`: a label is stored
// (ground truth for evaluation; an unlabeled training case keeps its label for evaluation only).
// `class_voxels[c]` counts voxels of class c, `class_slices[c]` slices containing class c
// (empty arrays when has_label is false).
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace cmaf::datastore {

inline constexpr int kManifestFormatVersion = 1;
inline constexpr const char* kManifestFormat = "cmaformer-dataset";
inline constexpr const char* kManifestFileName = "manifest.json";
inline constexpr const char* kCasesFolder = "cases";

enum class Split { kTrain, kVal, kTest };
std::string to_string(Split split);
Split split_from_string(const std::string& text, const std::string& where);

struct ManifestCase {
  std::string id;
  std::string file;  // relative to the dataset folder: "cases/<id>.h5"
  std::string site;
  Split split = Split::kTrain;
  bool labeled = false;
  bool has_label = false;
  std::array<int64_t, 3> shape{0, 0, 0};  // D, H, W
  std::array<double, 3> spacing{1, 1, 1};  // z, y, x mm
  std::vector<int64_t> class_voxels;
  std::vector<int64_t> class_slices;
  std::string source;
  int64_t slices() const { return shape[0]; }
};

struct SiteRecord {
  std::string name;
  std::string source;
  nlohmann::json preprocessing;
  std::string created;  // UTC, ISO 8601
};

struct DatasetManifest {
  int format_version = kManifestFormatVersion;
  std::vector<std::string> classes;
  std::vector<SiteRecord> sites;
  nlohmann::json generator;  // null unless made by `cmaformer synth`
  std::vector<ManifestCase> cases;

  const ManifestCase* find_case(const std::string& id) const;
  const SiteRecord* find_site(const std::string& name) const;
};

std::string manifest_path(const std::string& dataset_dir);
bool has_manifest(const std::string& dataset_dir);

nlohmann::json to_json(const DatasetManifest& manifest);
// Validates every field; errors name `origin` (the file) and the JSON path ("cases[3].shape").
DatasetManifest manifest_from_json(const nlohmann::json& json, const std::string& origin);

DatasetManifest load_manifest(const std::string& dataset_dir);
void save_manifest(const std::string& dataset_dir, const DatasetManifest& manifest);  // atomic

}  // namespace cmaf::datastore
