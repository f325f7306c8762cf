#include "model/batch_norm.h"

#include "common/error.h"

namespace cmaf::model {

BatchNorm2dImpl::BatchNorm2dImpl(int64_t channels, double eps, double momentum)
    : eps_(eps), momentum_(momentum) {
  weight = register_parameter("weight", at::ones({channels}));
  bias = register_parameter("bias", at::zeros({channels}));
  running_mean = register_buffer("running_mean", at::zeros({channels}));
  running_var = register_buffer("running_var", at::ones({channels}));
  num_batches_tracked = register_buffer("num_batches_tracked", at::zeros({}, at::kLong));
}

at::Tensor BatchNorm2dImpl::forward(const at::Tensor& x) {
  if (is_training() && track_running_) num_batches_tracked.add_(1);
  if (is_training() && reducer_) return synchronised_forward(x);
  // Frozen: a training forward without running statistics normalises with the batch's alone.
  const bool running = track_running_ || !is_training();
  return at::batch_norm(x, weight, bias, running ? running_mean : at::Tensor(), running ? running_var : at::Tensor(),
                        is_training(), momentum_, eps_, /*cudnn_enabled=*/true);
}

at::Tensor BatchNorm2dImpl::synchronised_forward(const at::Tensor& input) {
  const at::Tensor x = input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble
                           ? input
                           : input.to(at::kFloat);  // statistics in fp32 under autocast
  const int64_t channels = x.size(1);
  const double count = static_cast<double>(x.numel() / channels);
  const std::vector<int64_t> dims{0, 2, 3};
  // One reduction for everything: [sum x, sum x^2, count] per channel.
  const at::Tensor local = at::stack({x.sum(dims), x.square().sum(dims), at::full({channels}, count, x.options())});
  const at::Tensor global = reducer_(local);
  const at::Tensor total = global[2];
  const at::Tensor mean = global[0] / total;
  const at::Tensor var = (global[1] / total - mean.square()).clamp_min(0.0);
  if (track_running_) {
    at::NoGradGuard no_grad;
    const at::Tensor unbiased = var * total / (total - 1.0).clamp_min(1.0);
    running_mean.mul_(1.0 - momentum_).add_(mean.detach().to(running_mean.dtype()) * momentum_);
    running_var.mul_(1.0 - momentum_).add_(unbiased.detach().to(running_var.dtype()) * momentum_);
  }
  const auto shape = std::vector<int64_t>{1, channels, 1, 1};
  const at::Tensor scale = (weight / (var + eps_).sqrt()).view(shape);
  return (x - mean.view(shape)) * scale + bias.view(shape);
}

void set_statistics_reducer(torch::nn::Module& module, const StatisticsReducer& reducer) {
  for (const auto& child : module.modules(/*include_self=*/true)) {
    if (auto* norm = child->as<BatchNorm2d>()) norm->set_statistics_reducer(reducer);
  }
}

FrozenRunningStatistics::FrozenRunningStatistics(torch::nn::Module& module) : module_(module) {
  for (const auto& child : module_.modules(/*include_self=*/true)) {
    if (auto* norm = child->as<BatchNorm2d>()) norm->set_track_running_statistics(false);
  }
}

FrozenRunningStatistics::~FrozenRunningStatistics() {
  for (const auto& child : module_.modules(/*include_self=*/true)) {
    if (auto* norm = child->as<BatchNorm2d>()) norm->set_track_running_statistics(true);
  }
}

}  // namespace cmaf::model
