// Equal step counts on every rank for deliberately uneven shards, under a real mpirun.
//
//   equal_steps_probe DIR EPOCHS
//
// Rank 0 writes a synthetic dataset of 7 labeled and 4 unlabeled cases into DIR (3 ranks get
// 3/2/2 labeled cases); every rank plans its shard, streams its batches through the loader with
// foreground oversampling and all-reduces once per step, as training does. If one rank ran out
// of data before the others, they would wait in that all-reduce forever: ctest's timeout turns
// the hang into a failure. At the end the step counts are compared (min == max) and the batch
// contents are checked against each rank's own shard. Exit 0 on success.
#include <ATen/ATen.h>
#include <glog/logging.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <set>

#include "cluster/process_runtime.h"
#include "common/error.h"
#include "datastore/batch_loader.h"
#include "datastore/manifest.h"
#include "datastore/synth.h"
#include "sharding/foreground_index.h"
#include "sharding/shard_plan.h"
#include "sharding/step_sampler.h"

namespace {

int run(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: equal_steps_probe DIR EPOCHS\n";
    return 2;
  }
  const std::string dir = argv[1];
  const int epochs = std::atoi(argv[2]);
  cmaf::cluster::RuntimeOptions runtime_options;
  runtime_options.threads = 1;
  auto runtime = cmaf::cluster::ProcessRuntime::start(&argc, &argv, runtime_options);
  int64_t steps_run = 0;
  bool wrong_file = false;
  {
    auto world = runtime->world_communicator();
    if (world->rank() == 0) {
      std::filesystem::remove_all(dir);
      cmaf::datastore::SynthOptions synth;
      synth.out = dir;
      synth.cases = 11;
      synth.phantom = {32, 5, 4};
      synth.seed = 3;
      synth.labeled_cases = "7";
      cmaf::datastore::run_synth(synth);
    }
    world->barrier();
    const auto manifest = cmaf::datastore::load_manifest(dir);
    cmaf::sharding::ShardPlanOptions plan_options;
    plan_options.world_size = world->size();
    plan_options.seed = 5;
    plan_options.reshuffle_each_epoch = true;
    const int64_t labeled_batch = 2;
    for (int epoch = 0; epoch < epochs; ++epoch) {
      plan_options.epoch = epoch;
      const auto plan = cmaf::sharding::plan_shards(manifest, plan_options);
      const auto& shard = plan.ranks[static_cast<size_t>(world->rank())];
      const auto index = cmaf::sharding::build_foreground_index(dir, shard);
      cmaf::sharding::SamplerOptions sampler_options;
      sampler_options.labeled_batch = labeled_batch;
      sampler_options.unlabeled_batch = 1;
      sampler_options.foreground_fraction = 0.5;
      sampler_options.seed = 7 + static_cast<uint64_t>(epoch);
      const cmaf::sharding::StepSampler sampler(shard, sampler_options, world->rank(), &index);
      const int64_t steps = cmaf::sharding::steps_per_epoch(plan, labeled_batch);
      const int64_t first = steps_run;
      cmaf::datastore::LoaderOptions loader_options;
      loader_options.dataset_dir = dir;
      loader_options.input_size = 32;
      loader_options.threads = 2;
      loader_options.shard_files = cmaf::sharding::shard_files(shard);
      loader_options.rank = world->rank();
      const std::set<std::string> mine(loader_options.shard_files.begin(), loader_options.shard_files.end());
      cmaf::datastore::BatchLoader loader(
          loader_options, [&](int64_t step) { return cmaf::sharding::step_request(sampler, step - first); }, first);
      LOG(INFO) << "rank " << world->rank() << " epoch " << epoch << ": " << shard.labeled.size() << " labeled cases ("
                << shard.labeled_slices << " slices), " << shard.unlabeled.size() << " unlabeled, " << steps
                << " steps";
      for (int64_t s = 0; s < steps; ++s) {
        const auto batch = loader.next();
        for (const auto& r : batch.labeled_refs) wrong_file |= mine.count(r.file) == 0;
        for (const auto& r : batch.unlabeled_refs) wrong_file |= mine.count(r.file) == 0;
        at::Tensor token = at::ones({1});
        world->all_reduce(token, cmaf::cluster::ReduceOp::kSum);  // hangs if a rank stopped early
        ++steps_run;
      }
    }
    at::Tensor counts = at::tensor({static_cast<double>(steps_run), -static_cast<double>(steps_run)}, at::kDouble);
    world->all_reduce(counts, cmaf::cluster::ReduceOp::kMax);
    const double max_steps = counts[0].item<double>();
    const double min_steps = -counts[1].item<double>();
    if (world->rank() == 0) {
      std::cout << "steps per rank: min " << min_steps << " max " << max_steps << "\n";
    }
    if (max_steps != min_steps || wrong_file) {
      std::cerr << "rank " << world->rank() << ": steps " << steps_run << " (min " << min_steps << ", max "
                << max_steps << ")" << (wrong_file ? ", read a file outside its shard" : "") << "\n";
      return 1;
    }
    if (world->rank() == 0) std::filesystem::remove_all(dir);
  }
  runtime.reset();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "equal_steps_probe: " << e.what() << "\n";
    return 1;
  }
}
