// A loader batch as LibTorch tensors that own their memory (the trainer and the loader
// benchmark train on these).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "datastore/batch_loader.h"

namespace cmaf::core {

struct StepTensors {
  torch::Tensor labeled;  // [Bl, 1, S, S] float
  torch::Tensor label;    // [Bl, S, S] int64
  torch::Tensor weak;     // [Bu, 1, S, S]
  torch::Tensor strong;   // [Bu, 1, S, S]
  std::vector<std::pair<std::string, int64_t>> unlabeled_slices;  // (case file, slice)
  std::vector<datastore::GeometricParams> geometry;                // of each unlabeled sample
};

StepTensors to_tensors(const datastore::Batch& batch);
// The image and label tensors moved to `device` (no copy when they are there already); the
// images in channels-last layout when asked.
StepTensors to_device(StepTensors tensors, const torch::Device& device, bool channels_last = false);

}  // namespace cmaf::core
