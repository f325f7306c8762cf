// Periodic validation during training: mean Dice per class on the val split's slices, resized to
// the network input (nearest label), spread over ranks (slice i goes to rank i mod N) and summed
// across ranks. A slice-level, input-resolution estimate for monitoring; whole-volume metrics at
// the scan's resolution are `cmaformer eval`'s job.
//
// Dice_c = 2 I / (P + T) over all val slices of the split; a class with P + T = 0 is undefined
// (NaN) and left out of the means. Also per site.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cluster/communicator.h"
#include "datastore/manifest.h"
#include "model/cmaformer.h"

namespace cmaf::core {

struct ValidationResult {
  int64_t slices = 0;               // over all ranks
  std::vector<double> dice;         // foreground classes 1..K-1
  double mean_dice = 0.0;           // over defined classes
  std::map<std::string, std::vector<double>> site_dice;
  std::map<std::string, double> site_mean_dice;
};

class Validator {
 public:
  // max_slices 0: every val slice; otherwise that many, evenly spaced over the split.
  Validator(std::string dataset_dir, const datastore::DatasetManifest& manifest, int64_t input_size,
            int64_t max_slices, int rank, int world_size);
  int64_t total_slices() const { return total_; }
  // Collective: every rank must call it. Runs `model` in eval mode under no_grad, restores its
  // training mode.
  ValidationResult run(model::CmaformerImpl& model, cluster::Communicator& world, int64_t batch);

 private:
  struct Item {
    std::string file;
    int64_t slice;
    int site;
  };
  void load();

  std::string dataset_dir_;
  int64_t input_size_;
  int64_t classes_;
  std::vector<std::string> sites_;
  std::vector<Item> mine_;
  int64_t total_ = 0;
  bool loaded_ = false;
  at::Tensor images_;  // [n, 1, S, S]
  at::Tensor labels_;  // [n, S, S] int64
};

}  // namespace cmaf::core
