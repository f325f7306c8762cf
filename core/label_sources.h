// Label volumes to score, matched by case id: a NIfTI file, a folder of NIfTI files
// (`<case>.nii.gz` / `<case>.nii`), or a dataset folder (its cases' stored labels, for
// evaluation). Lets `cmaformer metrics` score predictions made by other tools (nnU-Net, MONAI)
// with exactly the code `cmaformer eval` uses.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "datastore/volume.h"

namespace cmaf::core {

struct LabelVolume {
  std::string case_id;
  std::string origin;  // file path, or dataset folder + case file
  std::string site;    // from a dataset; "" otherwise
  datastore::VolumeGeometry geometry;
  std::vector<uint8_t> labels;
};

// Case id -> where to read it. For a dataset, only the cases of `split` ("train", "val",
// "test") that store a label. Throws InputError for a path that is none of the three kinds.
std::map<std::string, std::string> list_label_sources(const std::string& path, const std::string& split = "test");

// Reads one entry of list_label_sources(path). Label ids above 255 or negative are an InputError
// naming the file.
LabelVolume read_label_source(const std::string& path, const std::string& case_id, const std::string& where);

}  // namespace cmaf::core
