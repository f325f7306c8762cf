// The Trainer's set-up (model, resume or start, data, pool) and what the loop calls at its
// intervals (replica checks, validation, checkpoints); the step loop is core/training_loop.cpp.
#include "core/trainer.h"

#include <glog/logging.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>

#include "cluster/differentiable_all_reduce.h"
#include "cluster/parameter_sync.h"
#include "common/atomic_file.h"
#include "common/error.h"
#include "core/checkpoint_store.h"
#include "core/fused_optimizer.h"
#include "core/rank_agreement.h"
#include "core/trainer_internal.h"
#include "model/batch_norm.h"

namespace cmaf::core {
namespace detail {
namespace fs = std::filesystem;

Trainer::Trainer(const TrainConfig& config, cluster::Communicator& world, const TrainDevice& device)
    : config_(config),
      world_(world),
      device_(device.device),
      device_world_(device.communicator != nullptr ? *device.communicator : world),
      coordinator_(world.rank() == 0),
      log_(config.run_dir, coordinator_) {
  config_.validate();
  manifest_ = datastore::load_manifest(config_.data);
  classes_ = static_cast<int64_t>(manifest_.classes.size());
  model_config_ = config_.model();
  model_config_.classes = classes_;
  model_config_.validate();
  if (coordinator_) {
    fs::create_directories(fs::path(config_.run_dir) / kCheckpointsFolder);
    nlohmann::json resolved = config_.to_json();
    // Absolute paths, so plot, eval and a resume from another folder find the data.
    resolved["data"] = fs::absolute(config_.data).lexically_normal().string();
    resolved["run-dir"] = fs::absolute(config_.run_dir).lexically_normal().string();
    resolved["model"] = model_config_.to_json();
    resolved["world_size"] = world_.size();
    write_file_atomically((fs::path(config_.run_dir) / "config.json").string(), resolved.dump(2) + "\n");
  }
  // Its broadcast waits for rank 0's writes above, as a barrier would; the options were checked
  // before the device (cmaformer train).
  check_run_dir_shared(config_.run_dir, world_);
  set_up_model();
  resume_or_start();
  set_up_data();
  if (config_.pool_refresh_every > 0 && data_->unlabeled_anywhere) {
    PoolOptions o;
    o.run_dir = config_.run_dir;
    o.dataset_dir = config_.data;
    o.input_size = model_config_.input_size;
    o.classes = classes_;
    o.base_threshold = config_.confidence_threshold;
    o.mode = threshold_mode_from_string(config_.pool_thresholds);
    o.batch = std::max<int64_t>(1, config_.labeled_batch + config_.unlabeled_batch);
    o.prior_ratio = config_.pool_prior_ratio;
    o.recalibrate_batch_norm = config_.pool_recalibrate_bn;
    pool_ = std::make_unique<PseudoLabelPool>(o, world_);
    // A fresh start (or a resume from before the first version) publishes its first version at
    // the top of the step loop, at --unlabeled-start-step.
    if (resumed_from_ >= 0 && state_.pool_version > 0) {
      pool_->load(state_.pool_version, data_->shard(world_.rank()));
    }
  }
  // On the CPU only: a GPU rank's waits also cover its own queued kernels (core/rank_pace.h).
  if (world_.size() > 1 && device_.is_cpu()) pace_ = std::make_unique<PaceMeter>(world_);
}

void Trainer::refresh_pool(int64_t step) {
  const nlohmann::json published = pool_->refresh(*teacher_, data_->shard(world_.rank()), step);
  state_.pool_version = pool_->version();
  log_.append({{"step", step}, {"pool", published}});
  if (coordinator_) {
    LOG(INFO) << "step " << step << ": pseudo-label pool version " << pool_->version() << " published";
  }
}

void Trainer::set_up_model() {
  torch::manual_seed(config_.seed);  // identical initial weights everywhere (then broadcast anyway)
  student_ = model::Cmaformer(model_config_);
  teacher_ = model::Cmaformer(model_config_);
  if (config_.contrastive_weight > 0.0) head_ = losses::ProjectionHead(model_config_.widths[1]);
  // On the training device, convolution weights in NHWC with --channels-last.
  const auto place = [this](torch::nn::Module& module) {
    module.to(device_);
    if (!config_.channels_last) return;
    for (auto& p : module.parameters()) {
      if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
    }
  };
  place(*student_);
  place(*teacher_);
  if (head_) place(*head_);
  if (world_.size() > 1 && config_.sync_batch_norm) {
    model::set_statistics_reducer(*student_, cluster::statistics_reducer(device_world_));
    if (head_) model::set_statistics_reducer(*head_, cluster::statistics_reducer(device_world_));
  }
  parameters_ = cluster::named_tensors(*student_, "", false);
  if (head_) {
    for (auto& p : cluster::named_tensors(*head_, "projection_head.", false)) parameters_.push_back(p);
  }
  buffers_ = cluster::named_buffers(*student_, "");
  if (head_) {
    for (auto& b : cluster::named_buffers(*head_, "projection_head.")) buffers_.push_back(b);
  }
  std::vector<torch::Tensor> tensors;
  for (const auto& p : parameters_) tensors.push_back(p.tensor);
  if (config_.optimizer == OptimizerKind::kAdamW) {
    optimizer_ = std::make_unique<FusedAdamW>(
        tensors, torch::optim::AdamWOptions(config_.lr).weight_decay(config_.weight_decay));
  } else {
    optimizer_ = std::make_unique<FusedSgd>(
        tensors,
        torch::optim::SGDOptions(config_.lr).momentum(config_.momentum).nesterov(true).weight_decay(config_.weight_decay));
  }
  losses::MultiplierOptions m;
  m.eta = config_.dual_step;
  m.tolerances.assign(static_cast<size_t>(classes_ - 1), config_.constraint_tolerance);
  m.lambda_max = config_.multiplier_max;
  state_.multipliers = losses::LagrangeMultipliers(classes_ - 1, m);
}

void Trainer::resume_or_start() {
  const std::optional<CheckpointInfo> chosen = agree_on_resume_checkpoint(config_.resume, config_.run_dir, world_);
  if (chosen) {
    load_training_checkpoint(parts(), *chosen, config_, classes_, world_);
    resumed_from_ = chosen->step;
  }
  // Every replica starts from rank 0's bytes (a fresh run's seeds agree already; this makes it a fact).
  auto state = cluster::named_tensors(*student_, "", true);
  for (auto& t : cluster::named_tensors(*teacher_, "teacher.", true)) state.push_back(t);
  if (head_) {
    for (auto& t : cluster::named_tensors(*head_, "projection_head.", true)) state.push_back(t);
  }
  if (!chosen) {
    torch::NoGradGuard no_grad;
    auto source = cluster::named_tensors(*student_, "", true);
    auto target = cluster::named_tensors(*teacher_, "", true);
    for (size_t i = 0; i < source.size(); ++i) target[i].tensor.copy_(source[i].tensor);
  }
  cluster::broadcast_tensors(state, device_world_);
  for (auto& p : teacher_->parameters()) p.set_requires_grad(false);
  teacher_->eval();
  cluster::BucketOptions buckets;
  buckets.bucket_bytes = config_.bucket_cap_mib << 20;
  buckets.first_bucket_bytes = static_cast<int64_t>(config_.first_bucket_mib * (1 << 20));
  buckets.bf16_wire = config_.bf16_allreduce;
  reducer_ = std::make_unique<cluster::BucketedReducer>(parameters_, device_world_, buckets);
  // The broadcast makes the parameters agree; this proves it, and that every rank restored the
  // same multipliers, before the first step rather than at the first --fingerprint-every step.
  check_agreement(state_.step);
  if (coordinator_ && world_.size() > 1) {
    LOG(INFO) << "all " << world_.size() << " ranks hold identical parameters and multipliers at "
              << (chosen ? str("resume (step ", state_.step, ")") : std::string("start"));
  }
}

void Trainer::set_up_data() {
  data_ = open_training_data(config_, manifest_, model_config_.input_size, world_.rank(), world_.size(), state_.step);
  validator_ = std::make_unique<Validator>(config_.data, manifest_, model_config_.input_size, config_.val_max_slices,
                                           world_.rank(), world_.size());
}

void Trainer::check_agreement(int64_t step) {
  const uint64_t mine = state_.multipliers.fingerprint();
  const torch::Tensor all = world_.all_gather(torch::tensor({static_cast<int64_t>(mine)}, torch::kLong));
  std::string differing;
  for (int64_t r = 0; r < all.numel(); ++r) {
    if (static_cast<uint64_t>(all[r].item<int64_t>()) != mine) differing += str(" ", r);
  }
  if (!differing.empty()) {
    throw InternalError(str("step ", step, ": the Lagrange multipliers of rank ", world_.rank(),
                            " differ from those of rank(s)", differing, " (they must be bit-identical)"));
  }
  std::vector<cluster::NamedTensor> state = parameters_;
  state.insert(state.end(), buffers_.begin(), buffers_.end());
  cluster::check_replicas_identical(state, world_, str("parameters and batch-norm statistics at step ", step));
}

void Trainer::validate(int64_t step) {
  if (validator_->total_slices() == 0) return;
  const ValidationResult r = validator_->run(*student_, world_, std::max<int64_t>(1, config_.labeled_batch));
  last_val_mean_ = r.mean_dice;
  if (!std::isnan(r.mean_dice) && r.mean_dice > state_.best_val_mean_dice) {
    state_.best_val_mean_dice = r.mean_dice;
    state_.best_step = step;
  }
  log_.validation(step, r, manifest_.classes);
}

TrainingParts Trainer::parts() {
  return {*student_, *teacher_, head_ ? head_.get() : nullptr, *optimizer_, state_};
}

std::string Trainer::save_checkpoint() {
  if (!all_finite(parameters_, false)) {
    throw Error(str("step ", state_.step, ": the weights are not finite; refusing to write a checkpoint over good ones"));
  }
  nlohmann::json sites = nlohmann::json::object();
  for (const auto& site : manifest_.sites) sites[site.name] = site.preprocessing;
  // What inference needs to prepare a new scan like the training data (cmaformer infer).
  const nlohmann::json described = {{"model", model_config_.to_json()},
                                    {"dataset", {{"classes", manifest_.classes}, {"site_preprocessing", sites}}}};
  return save_training_checkpoint(parts(), config_, described,
                                  {{"world_size", world_.size()}, {"val_mean_dice", last_val_mean_}}, world_);
}

}  // namespace detail

TrainResult train(const TrainConfig& config, cluster::Communicator& world, const TrainDevice& device) {
  detail::Trainer trainer(config, world, device);
  return trainer.run();
}

}  // namespace cmaf::core
