// BatchNorm2d that can synchronise its batch statistics across ranks.
//
// Same parameters and buffers as torch::nn::BatchNorm2d (weight, bias, running_mean,
// running_var, num_batches_tracked). Without a statistics reducer it is plain batch norm. With
// one (set_statistics_reducer; the cluster layer provides a differentiable cross-rank sum), a
// training forward normalises with the mean and variance of the GLOBAL batch, so results do not
// depend on how the batch is split over ranks; gradients flow through the reduction. The model
// knows only the callback, nothing of MPI.
#pragma once

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <functional>

namespace cmaf::model {

// Sums a tensor over all ranks, differentiably (its backward sums the gradient over ranks).
using StatisticsReducer = std::function<at::Tensor(const at::Tensor&)>;

class BatchNorm2dImpl : public torch::nn::Module {
 public:
  BatchNorm2dImpl(int64_t channels, double eps, double momentum);
  at::Tensor forward(const at::Tensor& x);
  void set_statistics_reducer(StatisticsReducer reducer) { reducer_ = std::move(reducer); }
  // false: training forwards still normalise with their batch statistics but leave the running
  // statistics (and num_batches_tracked) as they are.
  void set_track_running_statistics(bool track) { track_running_ = track; }

  at::Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  at::Tensor synchronised_forward(const at::Tensor& x);

  double eps_;
  double momentum_;
  bool track_running_ = true;
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

}  // namespace cmaf::model
