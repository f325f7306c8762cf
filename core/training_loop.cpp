// The Trainer's step loop (core/trainer_internal.h): per step, the micro-batches' forward and
// backward through the bucketed reducer, one sum of the loss terms and flags over the ranks,
// then the optimizer, teacher and multipliers, the step line and the interval work.
#include <glog/logging.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "cluster/parameter_sync.h"
#include "common/error.h"
#include "core/lr_schedule.h"
#include "core/stop_request.h"
#include "core/trainer_internal.h"
#include "losses/ramp_up.h"

namespace cmaf::core::detail {

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

}  // namespace cmaf::core::detail
