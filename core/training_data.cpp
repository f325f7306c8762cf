#include "core/training_data.h"

#include <glog/logging.h>

#include "common/error.h"

namespace cmaf::core {

std::unique_ptr<TrainingData> open_training_data(const TrainConfig& config, const datastore::DatasetManifest& manifest,
                                                 int64_t input_size, int rank, int world_size, int64_t first_step) {
  auto data = std::make_unique<TrainingData>();
  sharding::ShardPlanOptions plan_options;
  plan_options.world_size = world_size;
  plan_options.seed = config.seed;
  data->plan = sharding::plan_shards(manifest, plan_options);
  if (rank == 0) {
    for (const std::string& note : data->plan.notes) LOG(INFO) << "shard plan: " << note;
  }
  bool labeled_anywhere = false;
  bool unlabeled_anywhere = false;
  for (const auto& r : data->plan.ranks) {
    labeled_anywhere |= !r.labeled.empty();
    unlabeled_anywhere |= !r.unlabeled.empty();
  }
  // --unlabeled-batch 0 trains supervised only: no unlabeled stream, no LDC, no pool refreshes.
  data->unlabeled_anywhere = unlabeled_anywhere && config.unlabeled_batch > 0;
  // --separate-strong-forward: each forward is a collective under sync batch norm, so every rank
  // must hold unlabeled slices (the plan shares cases when ranks outnumber them).
  for (const auto& r : data->plan.ranks) {
    CMAF_CHECK(!data->unlabeled_anywhere || !config.separate_strong_forward || !r.unlabeled.empty(),
               "no unlabeled case");
  }
  if (!labeled_anywhere) {
    throw InputError(datastore::manifest_path(config.data), "cases", "no labeled train case: nothing to supervise");
  }
  const sharding::RankShard& shard = data->shard(rank);
  if (config.foreground_fraction > 0.0) data->foreground = sharding::build_foreground_index(config.data, shard);
  sharding::SamplerOptions s;
  s.site_weights = config.parsed_site_weights();
  for (const auto& [site, weight] : s.site_weights) {
    if (manifest.find_site(site) == nullptr) {
      throw InputError("--site-weights", site, str("no site '", site, "' in ", datastore::manifest_path(config.data)));
    }
  }
  s.labeled_batch = config.labeled_batch;
  s.unlabeled_batch = data->unlabeled_anywhere ? config.unlabeled_batch : 0;
  s.foreground_fraction = config.foreground_fraction;
  s.seed = config.seed;
  s.unlabeled_from_step = config.unlabeled_start_step * config.accumulate_steps;
  data->sampler = std::make_unique<sharding::StepSampler>(
      shard, s, rank, config.foreground_fraction > 0.0 ? &data->foreground : nullptr);
  data->steps_per_epoch = sharding::steps_per_epoch(data->plan, config.labeled_batch);
  datastore::LoaderOptions o;
  o.dataset_dir = config.data;
  o.input_size = input_size;
  o.threads = config.loader_threads;
  o.queue_steps = config.loader_queue;
  o.cache_budget_bytes = config.cache_budget_mib << 20;
  o.shard_files = sharding::shard_files(shard);
  o.augment = config.augment;
  o.seed = config.seed ^ 0x6c6f61646572ULL;
  o.rank = rank;
  const sharding::StepSampler* sampler = data->sampler.get();
  data->loader = std::make_unique<datastore::BatchLoader>(
      o, [sampler](int64_t step) { return sharding::step_request(*sampler, step); },
      first_step * config.accumulate_steps);  // A loader steps (micro-batches) per optimizer step
  return data;
}

}  // namespace cmaf::core
