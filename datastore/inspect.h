// `cmaformer inspect`: a readable summary of a dataset and a check of every file.
//
// Summary: cases per split and site (labeled / unlabeled), slices, class frequencies (the long
// tail at a glance). Check: every case file opens with the documented layout and agrees with its
// manifest entry (id, site, shape, spacing, label role); with verify_data every voxel is read:
// finite intensities, label ids within the classes, class counts equal to the manifest's.
// With verify_sources each label is re-read from its source scan (NIfTI or HDF5), mapped with
// the site's recorded label map and recounted: slice and per-class voxel counts must equal the
// manifest's. Files in cases/ that the manifest does not list, and leftovers of killed runs,
// are reported.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "datastore/manifest.h"

namespace cmaf::datastore {

struct InspectReport {
  std::string dir;
  DatasetManifest manifest;
  int64_t files_checked = 0;
  std::vector<std::string> problems;  // a dataset with problems is not fit for training
  std::vector<std::string> warnings;  // worth knowing, harmless

  std::string to_text() const;
  nlohmann::json to_json() const;
};

struct InspectOptions {
  bool verify_data = false;
  bool verify_sources = false;
};

InspectReport inspect_dataset(const std::string& dir, const InspectOptions& options = {});

}  // namespace cmaf::datastore
