// Label remapping from a source's class ids to the dataset's classes.
//   none                 identity: the dataset keeps the source classes
//   btcv13-to-synapse8   BTCV's 13 organs to TransUNet's Synapse 8 (METHOD.md section 4)
//   "8:1,4:2,..."        explicit source:target pairs; every other source id maps to 0
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "datastore/volume.h"

namespace cmaf::datastore {

inline constexpr const char* kBtcvToSynapse8 = "btcv13-to-synapse8";

struct LabelMap {
  std::string spec;                     // as given
  std::vector<int> target_of_source;    // index: source id; value: target id
  std::vector<std::string> classes;     // target class names, background first

  nlohmann::json to_json() const;
};

// `source_classes`: the source's class names by id (from dataset.json, or generated).
// `class_names`: optional target names for an explicit map (comma-separated).
LabelMap parse_label_map(const std::string& spec, const std::vector<std::string>& source_classes,
                         const std::string& class_names);

// Maps one label volume. A voxel whose id is not a declared source class is an InputError
// naming `path`, the value, how many voxels carry it and the first one's (z, y, x).
std::vector<uint8_t> apply_label_map(const Volume<int32_t>& labels, const LabelMap& map,
                                     const std::string& path);

}  // namespace cmaf::datastore
