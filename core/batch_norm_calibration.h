// Batch-norm statistics re-estimated on a dataset's slices for the weights a model has now
// (model/batch_norm.h: RunningStatisticsCalibration). Used by the pseudo-label pool before the
// EMA teacher labels (its inherited statistics belong to the student's weights) and by
// `cmaformer eval --recalibrate-bn` (a student trained on batches mixed with strongly jittered
// views carries statistics of that mix, not of clean slices).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cluster/communicator.h"
#include "model/batch_norm.h"
#include "model/cmaformer.h"

namespace cmaf::core {

struct CalibrationCase {
  std::string file;  // an HDF5 case file (datastore/case_file.h)
  int64_t slices = 0;
};

// Collective. Each rank forwards a random sample (seed, then its rank, pick the sample) of the
// slices of ITS `cases` (up to ~64 MiB of network input: 1024 slices at 128 px), resized to the
// network input, in shuffled batches of `batch` that mix cases, through `model` under
// `calibration`; the per-channel sums are added over ranks and the calibration finished (eval
// mode with the population statistics). Images only: no label is read.
void calibrate_on_slices(model::CmaformerImpl& model, model::RunningStatisticsCalibration& calibration,
                         const std::vector<CalibrationCase>& cases, int64_t input_size, int64_t batch,
                         uint64_t seed, const torch::Device& device, cluster::Communicator& world);

}  // namespace cmaf::core
