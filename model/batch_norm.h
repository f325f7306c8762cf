// BatchNorm2d that can synchronise its batch statistics across ranks.
//
// Same parameters and buffers as torch::nn::BatchNorm2d (weight, bias, running_mean,
// running_var, num_batches_tracked). Without a statistics reducer it is plain batch norm. With
// one (set_statistics_reducer; the cluster layer provides a cross-rank sum), a training forward
// normalises with the mean and variance of the GLOBAL batch, so results do not depend on how the
// batch is split over ranks; its backward sums the per-channel gradient statistics over the
// ranks too (one call of the reducer in forward, one in backward, on every rank, an empty batch
// included). The module (and its reducer) must outlive the backward. The model knows only the
// callback, nothing of MPI.
#pragma once

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <functional>
#include <vector>

namespace cmaf::model {

// Sums a tensor over all ranks (called with gradients off: batch norm's own backward accounts for
// the reduction).
using StatisticsReducer = std::function<at::Tensor(const at::Tensor&)>;

class BatchNorm2dImpl : public torch::nn::Module {
 public:
  BatchNorm2dImpl(int64_t channels, double eps, double momentum);
  at::Tensor forward(const at::Tensor& x);
  void set_statistics_reducer(StatisticsReducer reducer) { reducer_ = std::move(reducer); }
  // false: training forwards still normalise with their batch statistics but leave the running
  // statistics (and num_batches_tracked) as they are.
  void set_track_running_statistics(bool track) { track_running_ = track; }
  // Calibration (RunningStatisticsCalibration below): while on, a training forward normalises
  // with its batch statistics and adds per channel sum x, sum x^2 and the count to `sums`
  // (float64, [3, C]), leaving the running statistics alone; set_calibration(false) ends it.
  void set_calibration(bool on);
  const at::Tensor& calibration_sums() const { return calibration_sums_; }

  at::Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  at::Tensor synchronised_forward(const at::Tensor& x);

  double eps_;
  double momentum_;
  bool track_running_ = true;
  at::Tensor calibration_sums_;  // defined while calibrating
  StatisticsReducer reducer_;
};
TORCH_MODULE(BatchNorm2d);

// Installs `reducer` in every BatchNorm2d below `module` (an empty reducer: back to local BN).
void set_statistics_reducer(torch::nn::Module& module, const StatisticsReducer& reducer);

// While alive, no BatchNorm2d below `module` updates its running statistics (a forward of inputs
// from another distribution, e.g. strongly augmented views, that should not shift what the model
// normalises with at evaluation).
class FrozenRunningStatistics {
 public:
  explicit FrozenRunningStatistics(torch::nn::Module& module);
  ~FrozenRunningStatistics();
  FrozenRunningStatistics(const FrozenRunningStatistics&) = delete;
  FrozenRunningStatistics& operator=(const FrozenRunningStatistics&) = delete;

 private:
  torch::nn::Module& module_;
};

// Re-estimates the running statistics for the weights the model has now, as after weight
// averaging (SWA's update_bn): an EMA teacher's weights are an average of the student's over the
// last ~1 / (1 - decay) steps, but the running statistics it inherits were gathered under the
// student's own, moving weights, and the mismatch can wreck its eval-mode predictions (measured
// on BTCV: a supervised student at 600 steps had liver Dice 0.62 on unseen scans, its EMA teacher
// with the student's statistics 0.31 at 4x the liver's volume). While alive, every BatchNorm2d
// below `module` is in training mode (the rest of the module stays as the caller set it, so
// dropout can stay off) and each forward adds its inputs' per-channel sums to the layer's
// totals. The statistics become the population mean and (unbiased) variance of everything
// forwarded, not an average of per-batch ones, which would miss the spread between batches
// (large for batches of neighbouring slices). Feed batches like the training ones (slices
// drawn across cases): the layers normalise with batch statistics meanwhile. Destruction
// restores the running statistics and modes from before.
class RunningStatisticsCalibration {
 public:
  explicit RunningStatisticsCalibration(torch::nn::Module& module);
  ~RunningStatisticsCalibration();
  RunningStatisticsCalibration(const RunningStatisticsCalibration&) = delete;
  RunningStatisticsCalibration& operator=(const RunningStatisticsCalibration&) = delete;

  // Every layer's totals so far, flattened: [sum x, sum x^2, count] per channel, layer by
  // layer in module order (float64). Sums from several ranks can simply be added.
  at::Tensor sums() const;
  // Ends the forwards: the running statistics become the population statistics of `sums`
  // (same layout as sums(); for example the sum over ranks) and the batch norms go to eval mode.
  // A channel with a count below 2 keeps the statistics from before.
  void finish(const at::Tensor& sums);

 private:
  std::vector<BatchNorm2dImpl*> norms_;
  std::vector<std::vector<at::Tensor>> saved_;  // running_mean, running_var, num_batches_tracked
  std::vector<bool> was_training_;
};

}  // namespace cmaf::model
