// `cmaformer eval`: whole-volume evaluation of a checkpoint on a dataset split.
//
// Each case: slices resized to the network input in batches, softmax probabilities resized back
// to the scan's in-plane size (bilinear, align_corners false), optionally averaged with the
// left-right flipped input's (flip test-time augmentation), argmax, optionally each organ's
// largest connected component only; then per-class metrics
// (core/segmentation_metrics.h) at the case's own resolution and spacing. Cases are spread over
// ranks by voxel count (largest first onto the least loaded rank, the same plan on every rank),
// and rank 0 gathers the results and writes OUT/metrics.{json,csv,md} and, on request, the
// predictions as OUT/predictions/<case>.nii.gz in the case's geometry (the source scan's affine).
#pragma once

#include <cstdint>
#include <string>

#include "cluster/communicator.h"

namespace cmaf::core {

struct EvalOptions {
  std::string checkpoint;  // a checkpoint folder (or a model.pt weights file)
  std::string data;
  std::string split = "test";
  std::string out;
  bool flip_tta = false;
  // Re-estimate the batch-norm statistics on the dataset's training slices (images only) first
  // (core/batch_norm_calibration.h); the test cases are never used for it.
  bool recalibrate_bn = false;
  std::string recalibrate_on = "train";  // or "labeled": the labeled training cases only
  bool save_predictions = false;
  // Per organ, keep the largest 3-D connected component of the prediction (core/largest_component.h),
  // before scoring and saving.
  bool largest_component = false;
  int64_t batch = 8;
};

// Returns the number of cases scored (on rank 0; others return their own share).
int64_t evaluate(const EvalOptions& options, cluster::Communicator& world);

}  // namespace cmaf::core
