// What one rank of `cmaformer train` reads: the shard plan over all ranks, this rank's step
// sampler (labeled and unlabeled slices of each step, optionally foreground-biased and weighted
// by site) and its batch loader, positioned at the step training resumes from.
#pragma once

#include <cstdint>
#include <memory>

#include "core/train_config.h"
#include "datastore/batch_loader.h"
#include "datastore/manifest.h"
#include "sharding/foreground_index.h"
#include "sharding/shard_plan.h"
#include "sharding/step_sampler.h"

namespace cmaf::core {

struct TrainingData {
  TrainingData() = default;
  TrainingData(const TrainingData&) = delete;  // `sampler` points at `foreground`
  TrainingData& operator=(const TrainingData&) = delete;

  sharding::ShardPlan plan;
  sharding::ForegroundIndex foreground;  // empty without --foreground-fraction
  std::unique_ptr<sharding::StepSampler> sampler;
  std::unique_ptr<datastore::BatchLoader> loader;
  bool unlabeled_anywhere = false;  // some rank holds unlabeled slices and --unlabeled-batch > 0
  int64_t steps_per_epoch = 1;

  const sharding::RankShard& shard(int rank) const { return plan.ranks[static_cast<size_t>(rank)]; }
};

// Throws InputError when no rank has a labeled case or --site-weights names a site the dataset
// does not have. `first_step`: the optimizer step training starts or resumes at (the loader
// counts micro-batches: first_step x --accumulate-steps). Rank 0 logs the plan's notes.
std::unique_ptr<TrainingData> open_training_data(const TrainConfig& config, const datastore::DatasetManifest& manifest,
                                                 int64_t input_size, int rank, int world_size, int64_t first_step);

}  // namespace cmaf::core
