// What a rank reads at each step: (case, slice) pairs of its shard, for the labeled and the
// unlabeled stream.
//
// A pure function of (shard, options, seed, rank, step): resuming at step k replays exactly the
// batches an uninterrupted run would have read at step k, whatever happened before. Every rank
// runs the same number of steps per epoch (iteration-based epochs), so none waits in a
// collective for one that ran out of data.
//
// Cases are drawn with probability proportional to slices x site weight (so a small hospital is
// not drowned by a large one when its weight is raised), then a slice uniformly. Foreground
// oversampling: round(fraction x batch) labeled samples per batch are forced to contain a
// foreground class, chosen uniformly among the classes present in the shard (so rare classes
// are favoured over their voxel frequency); the same fraction on every rank and world size.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/random.h"
#include "datastore/batch_loader.h"
#include "sharding/shard_plan.h"

namespace cmaf::sharding {

struct SliceRef {
  const ShardCase* source = nullptr;  // points into the RankShard given to the sampler
  int64_t slice = 0;
};

// Slices containing each class, per case: index[case id][class] = slice numbers (built once per
// case from its label; classes start at 1).
using ForegroundIndex = std::map<std::string, std::map<int, std::vector<int64_t>>>;

struct SamplerOptions {
  int64_t labeled_batch = 2;
  int64_t unlabeled_batch = 2;
  double foreground_fraction = 0.0;
  std::map<std::string, double> site_weights;  // default 1
  uint64_t seed = 0;
  // Loader steps (micro-batches) before this one draw no unlabeled slices (train
  // --unlabeled-start-step). The labeled draws do not depend on it.
  int64_t unlabeled_from_step = 0;
};

class StepSampler {
 public:
  // `index` may be null when foreground_fraction is 0. Both must outlive the sampler.
  StepSampler(const RankShard& shard, SamplerOptions options, int rank, const ForegroundIndex* index);

  std::vector<SliceRef> labeled(int64_t step) const;
  std::vector<SliceRef> unlabeled(int64_t step) const;

 private:
  std::vector<SliceRef> draw(const std::vector<ShardCase>& cases, int64_t batch, int64_t step, uint64_t stream,
                             int64_t forced) const;
  SliceRef draw_foreground(const std::vector<ShardCase>& cases, DeterministicRng& rng) const;

  const RankShard& shard_;
  SamplerOptions options_;
  int rank_;
  const ForegroundIndex* index_;
  std::vector<int> classes_present_;  // foreground classes found in the labeled shard's index
};

// Steps per epoch for every rank: enough for the largest rank's labeled shard to be seen once
// at this batch size, at least 1. A function of the plan only, so every rank agrees.
int64_t steps_per_epoch(const ShardPlan& plan, int64_t labeled_batch);

// The loader's view of a step: both streams as (file, slice) requests.
datastore::StepRequest step_request(const StepSampler& sampler, int64_t step);
// The files a rank may read: what its loader caches.
std::vector<std::string> shard_files(const RankShard& shard);

}  // namespace cmaf::sharding
