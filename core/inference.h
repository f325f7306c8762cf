// `cmaformer infer`: segment new scans with a trained checkpoint. The scan is prepared exactly as
// the training data was (the intensity normalisation recorded in the checkpoint's state.json,
// per site), predicted slice by slice (core/slice_predictor.h), and written as a uint8 label
// NIfTI with the input's dimensions, qform, sform and affine, so it overlays the scan in 3D
// Slicer or ITK-SNAP.
#pragma once

#include <cstdint>
#include <string>

namespace cmaf::core {

struct InferOptions {
  std::string checkpoint;  // a checkpoint folder (holds model.pt and state.json)
  std::string input;       // a NIfTI scan, or a folder of them
  std::string output;      // a NIfTI path, or a folder (created) for a folder input
  std::string site;        // whose preprocessing to apply; "" = the only one (or all identical)
  bool flip_tta = false;
  bool largest_component = false;  // each organ's largest connected component only
  int64_t batch = 8;
};

// Returns the number of scans segmented. Throws InputError naming the file for unreadable
// scans, a checkpoint without recorded preprocessing, or an ambiguous site.
int64_t run_inference(const InferOptions& options);

}  // namespace cmaf::core
