#include "core/trainer.h"

#include <glog/logging.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "cluster/differentiable_all_reduce.h"
#include "cluster/gradient_reducer.h"
#include "cluster/parameter_sync.h"
#include "common/atomic_file.h"
#include "common/error.h"
#include "core/batch_tensors.h"
#include "core/checkpoint_store.h"
#include "core/fused_optimizer.h"
#include "core/lr_schedule.h"
#include "core/pseudo_label_pool.h"
#include "core/rank_agreement.h"
#include "core/rank_pace.h"
#include "core/step_loss.h"
#include "core/stop_request.h"
#include "core/training_checkpoint.h"
#include "core/training_data.h"
#include "core/training_log.h"
#include "core/training_state.h"
#include "core/validation.h"
#include "datastore/manifest.h"
#include "losses/boundary_contrastive.h"
#include "losses/ramp_up.h"
#include "model/batch_norm.h"
#include "model/cmaformer.h"

namespace cmaf::core {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

class Trainer {
 public:
  Trainer(const TrainConfig& config, cluster::Communicator& world, const TrainDevice& device);
  TrainResult run();

 private:
  void set_up_model();
  void set_up_data();
  void refresh_pool(int64_t step);
  void resume_or_start();
  TrainingParts parts();
  std::string save_checkpoint();
  // One micro-batch of optimizer step `step`: forward, losses, backward through the reducer (it
  // communicates after the last micro-batch). Returns the per-step slots, loss terms / A.
  torch::Tensor train_step(const StepTensors& t, int64_t step, int64_t micro, StepLoss* loss_out);
  void update_teacher(int64_t step);
  void validate(int64_t step);
  void check_agreement(int64_t step);

  // The steps of run()'s loop, in order.
  struct StepOutcome {
    torch::Tensor sums;               // kSlotCount values, summed over the ranks
    std::vector<double> constraints;  // mean over the micro-batches
    std::vector<uint8_t> active;      // in any micro-batch
    int64_t images = 0;               // over all ranks
  };
  struct LogWindow {  // since the last step line
    Clock::time_point start = Clock::now();
    int64_t images = 0;
    int64_t steps = 0;
  };
  void maybe_refresh_pool(int64_t step);
  // The A micro-batches through train_step, then the buffers' broadcast (local batch norm) and
  // the loss terms' and flags' sum over the ranks.
  StepOutcome forward_backward(int64_t step);
  // Clipping, optimizer, teacher and multipliers; or, when a rank saw a non-finite value, a
  // skipped step (--non-finite skip) or an Error (stop).
  void apply_step(int64_t step, const StepOutcome& outcome);
  // The step line of metrics.jsonl (with the ranks' pace), then a new window.
  void log_window(int64_t step, double lr, const StepOutcome& outcome, LogWindow* window);
  // Fingerprints, validation and checkpoint at their intervals; true: stop (a signal asked).
  bool after_step(bool stop, TrainResult* result);

  TrainConfig config_;
  cluster::Communicator& world_;
  torch::Device device_;
  cluster::Communicator& device_world_;  // for tensors on device_ (world_ on the CPU)
  bool coordinator_;
  model::CmaformerConfig model_config_;
  datastore::DatasetManifest manifest_;
  int64_t classes_ = 0;
  model::Cmaformer student_{nullptr};
  model::Cmaformer teacher_{nullptr};
  losses::ProjectionHead head_{nullptr};
  std::vector<cluster::NamedTensor> parameters_;
  // The trained modules' buffers (batch-norm statistics). With --sync-batch-norm they update the
  // same on every rank; without it, from each rank's own batches, so rank 0's are broadcast every
  // step (PyTorch DDP's broadcast_buffers): the teacher, validation and checkpoints see one set.
  std::vector<cluster::NamedTensor> buffers_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::unique_ptr<cluster::BucketedReducer> reducer_;
  TrainingState state_;
  int64_t resumed_from_ = -1;
  // Data.
  std::unique_ptr<TrainingData> data_;
  std::unique_ptr<Validator> validator_;
  std::unique_ptr<PseudoLabelPool> pool_;
  int64_t last_pool_refresh_ = -1;
  TrainingLog log_;
  std::unique_ptr<PaceMeter> pace_;  // several ranks: who sets the pace (core/rank_pace.h)
  double last_val_mean_ = -1.0;
};

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

torch::Tensor Trainer::train_step(const StepTensors& t, int64_t step, int64_t micro, StepLoss* loss_out) {
  const int64_t bu = t.strong.size(0);
  torch::Tensor sums = torch::zeros({kSlotCount}, torch::kDouble);
  UnlabeledTargets targets;
  if (bu > 0 && pool_) {
    const PoolTargets pool = pool_->targets(t.unlabeled_slices, t.geometry);
    targets = {pool.labels.clamp_min(0).to(device_), pool.confidence.to(device_)};
  } else if (bu > 0) {
    targets = teacher_targets(*teacher_, t.weak, config_.confidence_threshold, config_.bf16);
  }
  StepLossOptions o;
  o.classes = classes_;
  o.ldc = data_->unlabeled_anywhere && config_.use_ldc;
  o.ldc_fixed_weight = config_.ldc_fixed_weight;
  o.contrastive_weight = config_.contrastive_weight;
  o.ramp = losses::delayed_ramp_up(step, config_.unlabeled_start_step, config_.ramp_up_steps);
  o.bf16 = config_.bf16;
  o.separate_strong_forward = config_.separate_strong_forward;
  o.contrastive_seed = config_.seed ^ (static_cast<uint64_t>(step) * 1000003ULL) ^
                       (static_cast<uint64_t>(world_.rank()) << 48) ^ (static_cast<uint64_t>(micro) << 32);
  const StepLoss loss =
      step_loss(*student_, head_ ? head_.get() : nullptr, t, targets, state_.multipliers, o, device_world_);
  loss_out->constraints = loss.constraints;
  loss_out->constraint_active = loss.constraint_active;
  // Gradient accumulation: each of the A micro-batches contributes 1/A of the step's loss.
  const double a = static_cast<double>(config_.accumulate_steps);
  const bool last = micro == config_.accumulate_steps - 1;
  reducer_->prepare_for_micro_backward(micro == 0, last);
  (loss.objective / a).backward();
  if (last) reducer_->finish();
  auto bad = [](const torch::Tensor& v) { return std::isfinite(v.item<double>()) ? 0.0 : 1.0; };
  sums[kBadSupervised] = bad(loss.supervised.total);
  sums[kBadLdc] = bad(loss.ldc);
  sums[kBadContrastive] = bad(loss.contrastive);
  sums[kBadGradient] = last && !cluster::all_finite(parameters_, true) ? 1.0 : 0.0;
  sums[kStop] = last && stop_requested() ? 1.0 : 0.0;
  sums[kTotal] = loss.total.item<double>() / a;
  sums[kSupervised] = loss.supervised.total.item<double>() / a;
  sums[kCrossEntropy] = loss.supervised.cross_entropy.item<double>() / a;
  sums[kDice] = loss.supervised.dice.item<double>() / a;
  sums[kLdc] = loss.ldc.item<double>() / a;
  sums[kContrastive] = loss.contrastive.item<double>() / a;
  sums[kConfident] = bu > 0 ? targets.confidence.mean().item<double>() / a : 0.0;
  return sums;
}

void Trainer::update_teacher(int64_t step) {
  // Mean-teacher decay, lower in the first steps so the teacher leaves its random start quickly.
  const double decay = std::min(config_.ema_decay, static_cast<double>(step + 1) / static_cast<double>(step + 10));
  torch::NoGradGuard no_grad;
  const auto student = student_->parameters();
  auto teacher = teacher_->parameters();
  for (size_t i = 0; i < teacher.size(); ++i) teacher[i].mul_(decay).add_(student[i], 1.0 - decay);
  const auto student_buffers = student_->buffers();
  auto teacher_buffers = teacher_->buffers();
  for (size_t i = 0; i < teacher_buffers.size(); ++i) teacher_buffers[i].copy_(student_buffers[i]);
}

void Trainer::maybe_refresh_pool(int64_t step) {
  // Versions at --unlabeled-start-step and every --pool-refresh-every steps after it.
  const int64_t since_start = step - config_.unlabeled_start_step;
  if (pool_ && since_start >= 0 && last_pool_refresh_ != step &&
      (state_.pool_version == 0 || since_start % config_.pool_refresh_every == 0)) {
    refresh_pool(step);
    last_pool_refresh_ = step;
  }
}

Trainer::StepOutcome Trainer::forward_backward(int64_t step) {
  StepOutcome out;
  out.sums = torch::zeros({kSlotCount}, torch::kDouble);
  const double a = static_cast<double>(config_.accumulate_steps);
  for (int64_t micro = 0; micro < config_.accumulate_steps; ++micro) {
    const StepTensors t = to_device(to_tensors(data_->loader->next()), device_, config_.channels_last);
    out.images += (t.labeled.size(0) + (t.strong.defined() ? t.strong.size(0) : 0)) * world_.size();
    StepLoss micro_loss;
    out.sums += train_step(t, step, micro, &micro_loss);
    const std::vector<double>& micro_constraints = micro_loss.constraints;
    out.constraints.resize(micro_constraints.size(), 0.0);
    out.active.resize(micro_constraints.size(), 0);
    for (size_t c = 0; c < micro_constraints.size(); ++c) {
      out.constraints[c] += micro_constraints[c] / a;
      out.active[c] |= micro_loss.constraint_active[c];
    }
  }
  if (world_.size() > 1 && !config_.sync_batch_norm && !buffers_.empty()) {
    cluster::broadcast_packed(buffers_, device_world_);
  }
  world_.all_reduce(out.sums, cluster::ReduceOp::kSum);
  return out;
}

void Trainer::apply_step(int64_t step, const StepOutcome& outcome) {
  const auto* v = outcome.sums.data_ptr<double>();
  if (v[kBadSupervised] + v[kBadLdc] + v[kBadContrastive] + v[kBadGradient] > 0) {
    const std::string which = str(v[kBadSupervised] > 0 ? " supervised" : "", v[kBadLdc] > 0 ? " ldc" : "",
                                  v[kBadContrastive] > 0 ? " contrastive" : "",
                                  v[kBadGradient] > 0 ? " gradients" : "");
    if (config_.non_finite == NonFinitePolicy::kStop) {
      throw Error(str("non-finite values at step ", step, " in:", which,
                      " (on some rank); no checkpoint written. Lower --lr, enable --clip-grad-norm, or use "
                      "--non-finite skip"));
    }
    if (coordinator_) LOG(WARNING) << "step " << step << ": non-finite" << which << ", step skipped";
    ++state_.skipped_steps;
    return;
  }
  if (config_.clip_grad_norm > 0.0) {
    std::vector<torch::Tensor> tensors;
    for (const auto& p : parameters_) tensors.push_back(p.tensor);
    torch::nn::utils::clip_grad_norm_(tensors, config_.clip_grad_norm);
  }
  optimizer_->step();
  update_teacher(step);
  if (!outcome.constraints.empty() && config_.ldc_fixed_weight == 0.0 && step >= config_.unlabeled_start_step) {
    state_.multipliers.update(outcome.constraints);
  }
}

void Trainer::log_window(int64_t step, double lr, const StepOutcome& outcome, LogWindow* window) {
  const double seconds = std::chrono::duration<double>(Clock::now() - window->start).count();
  StepReport report;
  report.step = state_.step;
  report.epoch = step * config_.accumulate_steps / data_->steps_per_epoch;
  report.total_steps = config_.steps;
  report.lr = lr;
  report.ramp = losses::delayed_ramp_up(step, config_.unlabeled_start_step, config_.ramp_up_steps);
  report.sums = outcome.sums.data_ptr<double>();
  report.world_size = world_.size();
  report.multipliers = state_.multipliers.values();
  report.constraints = outcome.constraints;
  report.constraint_active = outcome.active;
  report.skipped_steps = state_.skipped_steps;
  report.images_per_second = static_cast<double>(window->images) / seconds;
  report.steps_per_second = static_cast<double>(window->steps) / seconds;
  if (pace_) {
    const PaceReport pace = pace_->gather();
    report.pace = pace.to_json();
    if (pace_->should_warn(pace) && coordinator_) LOG(WARNING) << "step " << state_.step << ": " << pace.warning();
  }
  log_.step(report);
  *window = LogWindow{};
}

bool Trainer::after_step(bool stop, TrainResult* result) {
  if (state_.step % config_.fingerprint_every == 0) check_agreement(state_.step);
  const bool at_end = state_.step == config_.steps;
  const bool checkpoint_now = state_.step % config_.checkpoint_every == 0 || at_end || stop;
  if ((config_.val_every > 0 && state_.step % config_.val_every == 0) || (config_.val_every == 0 && checkpoint_now)) {
    validate(state_.step);
  }
  if (checkpoint_now) result->last_checkpoint = save_checkpoint();
  if (stop) {
    result->stopped_by_signal = true;
    log_.finish();
    if (coordinator_) LOG(WARNING) << "stop requested (signal): checkpoint at step " << state_.step << " written";
  }
  return stop;
}

TrainResult Trainer::run() {
  TrainResult result;
  result.resumed_from = resumed_from_;
  install_stop_handlers();
  if (coordinator_) {
    LOG(INFO) << "training " << model_config_.preset << " (" << classes_ << " classes, input "
              << model_config_.input_size << ") on " << world_.size() << " rank(s) from step " << state_.step << " to "
              << config_.steps << ", " << data_->steps_per_epoch << " steps per epoch";
  }
  LogWindow window;
  while (state_.step < config_.steps) {
    const int64_t step = state_.step;
    maybe_refresh_pool(step);
    if (pace_) pace_->begin_step();
    const double lr = learning_rate(config_, step);
    for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr);
    const StepOutcome outcome = forward_backward(step);
    apply_step(step, outcome);
    if (pace_) pace_->end_step();
    state_.step = step + 1;
    window.images += outcome.images;
    ++window.steps;
    if (state_.step % config_.log_every == 0 || state_.step == config_.steps) log_window(step, lr, outcome, &window);
    if (after_step(outcome.sums.data_ptr<double>()[kStop] > 0, &result)) break;
  }
  if (state_.step >= config_.steps && result.last_checkpoint.empty()) {
    // Nothing left to train (resumed at the end): still leave a valid final state.
    validate(state_.step);
  }
  check_agreement(state_.step);
  result.final_step = state_.step;
  result.final_val_mean_dice = last_val_mean_;
  return result;
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

}  // namespace

TrainResult train(const TrainConfig& config, cluster::Communicator& world, const TrainDevice& device) {
  Trainer trainer(config, world, device);
  return trainer.run();
}

}  // namespace cmaf::core
