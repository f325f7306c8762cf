// Finding the scans of an input folder for `prep`, before anything is read or written.
//
//   nnU-Net raw: dataset.json + imagesTr/{case}_0000{ending} + labelsTr/{case}{ending}
//                (+ optional imagesTs/, labelsTs/). v2 dataset.json ("labels": name -> id,
//                "channel_names", "file_ending", "numTraining") and v1 ("labels": id -> name,
//                "modality", "training": [{image, label}], "test": [...]) are both read.
//   h5:          one .h5 file or a folder of them with datasets `image` and optional `label`
//                (TransUNet test_vol_h5, SSL4MIS volumes, cmaformer case files).
// Every file that the listing promises must exist: a missing one is an InputError naming it
// and where it was promised.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace cmaf::datastore {

enum class SourceFormat { kNnUnet, kH5 };

struct SourceCase {
  std::string id;
  std::string image_path;
  std::string label_path;  // empty when the case has no label
  bool from_test_folder = false;  // nnU-Net imagesTs
};

struct SourceDataset {
  SourceFormat format = SourceFormat::kNnUnet;
  std::string root;
  std::string modality;                      // "CT", "MR", ... or "" when not declared
  std::vector<std::string> classes;          // source class names by id; empty: not declared
  std::vector<SourceCase> cases;             // sorted by id
};

// `format`: auto | nnunet | h5.
SourceDataset discover_source(const std::string& input, const std::string& format);

}  // namespace cmaf::datastore
