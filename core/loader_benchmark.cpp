#include "core/loader_benchmark.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "cluster/process_runtime.h"
#include "common/error.h"
#include "core/batch_tensors.h"
#include "core/fused_optimizer.h"
#include "datastore/batch_loader.h"
#include "datastore/manifest.h"
#include "model/cmaformer.h"
#include "sharding/foreground_index.h"
#include "sharding/shard_plan.h"
#include "sharding/step_sampler.h"

namespace cmaf::core {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

class StepRunner {
 public:
  StepRunner(const model::CmaformerConfig& config)
      : model_(config), optimizer_(model_->parameters(), torch::optim::AdamWOptions(1e-4)) {
    model_->train();
  }

  // One training step on `t`; returns false if the loss was not finite.
  bool step(const StepTensors& t) {
    optimizer_.zero_grad();
    const int64_t bl = t.labeled.size(0);
    const torch::Tensor logits = model_->forward(torch::cat({t.labeled, t.strong}));
    torch::Tensor loss = torch::nn::functional::cross_entropy(logits.narrow(0, 0, bl), t.label);
    if (t.strong.size(0) > 0) {
      const torch::Tensor p = torch::softmax(logits.narrow(0, bl, t.strong.size(0)), 1);
      loss = loss - 0.1 * (p * torch::log(p + 1e-8)).sum(1).mean();
    }
    loss.backward();
    optimizer_.step();
    return std::isfinite(loss.item<double>());
  }

 private:
  model::Cmaformer model_;
  FusedAdamW optimizer_;  // the trainer's
};

}  // namespace

int64_t run_loader_benchmark(const LoaderBenchmarkOptions& o) {
  if (o.labeled_batch < 1 || o.unlabeled_batch < 0) {
    throw InputError("--labeled-batch", "", str(o.labeled_batch, "/", o.unlabeled_batch, ", expected >= 1 / >= 0"));
  }
  if (o.throughput_steps < 1 || o.train_steps < 1) throw InputError("--steps", "", "expected >= 1");
  model::CmaformerConfig config = model::preset_config(o.preset);
  if (o.input_size > 0) config.input_size = o.input_size;
  model::check_input_size(config.input_size, config.input_size);
  if (o.torch_threads < 1 || o.torch_threads > cluster::kMaxThreads) {
    throw InputError("--threads", "", str(o.torch_threads, ", expected 1 to ", cluster::kMaxThreads));
  }
  at::set_num_threads(o.torch_threads);

  const datastore::DatasetManifest manifest = datastore::load_manifest(o.data);
  sharding::ShardPlanOptions plan_options;
  plan_options.seed = o.seed;
  const sharding::ShardPlan plan = sharding::plan_shards(manifest, plan_options);
  const sharding::RankShard& shard = plan.ranks.front();
  if (shard.labeled.empty()) throw InputError(datastore::manifest_path(o.data), "cases", "no labeled train case");
  const sharding::ForegroundIndex index = sharding::build_foreground_index(o.data, shard);
  sharding::SamplerOptions sampler_options;
  sampler_options.labeled_batch = o.labeled_batch;
  sampler_options.unlabeled_batch = shard.unlabeled.empty() ? 0 : o.unlabeled_batch;
  sampler_options.foreground_fraction = 0.5;
  sampler_options.seed = o.seed;
  const sharding::StepSampler sampler(shard, sampler_options, 0, &index);
  const datastore::StepSource source = [&sampler](int64_t step) { return sharding::step_request(sampler, step); };
  datastore::LoaderOptions base;
  base.dataset_dir = o.data;
  base.input_size = config.input_size;
  base.shard_files = sharding::shard_files(shard);
  base.seed = o.seed;
  const int64_t per_step = o.labeled_batch + sampler_options.unlabeled_batch;
  int64_t wrong = 0;
  auto check = [&](const datastore::Batch& b) {
    const auto n = static_cast<size_t>(config.input_size * config.input_size);
    wrong += b.labeled_image.size() != static_cast<size_t>(o.labeled_batch) * n;
    wrong += b.strong_image.size() != static_cast<size_t>(sampler_options.unlabeled_batch) * n;
  };

  std::printf("# loader benchmark: %s, %zu labeled + %zu unlabeled train cases, input %lld, batch %lld + %lld\n",
              o.data.c_str(), shard.labeled.size(), shard.unlabeled.size(), static_cast<long long>(config.input_size),
              static_cast<long long>(o.labeled_batch), static_cast<long long>(sampler_options.unlabeled_batch));
  std::printf("%-8s %-24s %10s %12s\n", "threads", "source", "slices", "slices/s");
  int64_t step = 0;
  for (const int threads : o.reader_threads) {
    for (const bool cache : {false, true}) {
      datastore::LoaderOptions options = base;
      options.threads = threads;
      options.queue_steps = std::max<int64_t>(4, 2 * threads);
      if (!cache) options.cache_budget_bytes = 0;
      datastore::BatchLoader loader(options, source, step);
      if (cache && !loader.stats().cache_enabled) {
        std::printf("%-8d %-24s %10s %12s\n", threads, "memory cache", "-", "shard over the cache budget");
        continue;
      }
      // Cache: a first window loads the volumes; the second one is what training sees after.
      for (int window = 0; window < (cache ? 2 : 1); ++window) {
        const auto start = Clock::now();
        for (int64_t k = 0; k < o.throughput_steps; ++k) check(loader.next());
        const double seconds = seconds_since(start);
        step += o.throughput_steps;
        if (cache && window == 0) continue;
        std::printf("%-8d %-24s %10lld %12.1f\n", threads, cache ? "memory cache (warm)" : "HDF5 per slice",
                    static_cast<long long>(o.throughput_steps * per_step),
                    static_cast<double>(o.throughput_steps * per_step) / seconds);
      }
      step = loader.next_step() + options.queue_steps;  // skip what it prefetched
    }
  }

  // Training step: live loader vs the same batches held in memory.
  torch::manual_seed(static_cast<uint64_t>(o.seed));
  StepRunner runner(config);
  datastore::LoaderOptions options = base;
  options.threads = o.loader_threads;
  const int64_t passes = 2;
  std::vector<std::vector<StepTensors>> held(static_cast<size_t>(passes));
  {
    datastore::BatchLoader preload(options, source, 0);
    for (auto& pass : held) {
      for (int64_t k = 0; k < o.train_steps + 1; ++k) pass.push_back(to_tensors(preload.next()));
    }
  }
  std::vector<double> memory_times, loader_times;
  double wait = 0.0;
  for (int64_t pass = 0; pass < passes; ++pass) {
    for (size_t k = 0; k < held[static_cast<size_t>(pass)].size(); ++k) {
      const auto start = Clock::now();
      wrong += !runner.step(held[static_cast<size_t>(pass)][k]);
      if (k > 0) memory_times.push_back(seconds_since(start));  // the first step of a pass warms up
    }
    datastore::BatchLoader loader(options, source, pass * (o.train_steps + 1));
    for (int64_t k = 0; k < o.train_steps + 1; ++k) {
      const auto start = Clock::now();
      const datastore::Batch batch = loader.next();
      check(batch);
      wrong += !runner.step(to_tensors(batch));
      if (k > 0) loader_times.push_back(seconds_since(start));
    }
    wait += loader.stats().consumer_wait_seconds;
  }
  const double memory = median(memory_times);
  const double live = median(loader_times);
  std::printf("training step (preset %s, %d torch threads, %d reader thread%s): in-memory %.3f s, with loader %.3f s, "
              "ratio %.3f (target <= 1.03); waited for batches %.3f s in %zu steps  #wrong %lld\n",
              config.preset.c_str(), o.torch_threads, o.loader_threads, o.loader_threads == 1 ? "" : "s", memory, live,
              live / memory, wait, loader_times.size() + 2, static_cast<long long>(wrong));
  return wrong;
}

}  // namespace cmaf::core
