#include "model/batch_norm.h"

#include <tuple>

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

void BatchNorm2dImpl::set_calibration(bool on) {
  calibration_sums_ = on ? at::zeros({3, running_mean.size(0)}, at::TensorOptions().dtype(at::kDouble)) : at::Tensor();
}

at::Tensor BatchNorm2dImpl::forward(const at::Tensor& x) {
  if (is_training() && calibration_sums_.defined()) {
    at::NoGradGuard no_grad;
    const at::Tensor xd = x.detach().to(at::kDouble);
    const std::vector<int64_t> dims{0, 2, 3};
    calibration_sums_[0] += xd.sum(dims).to(at::kCPU);
    calibration_sums_[1] += xd.square().sum(dims).to(at::kCPU);
    calibration_sums_[2] += static_cast<double>(x.numel() / x.size(1));
    return at::batch_norm(x, weight, bias, at::Tensor(), at::Tensor(), /*training=*/true, momentum_, eps_,
                          /*cudnn_enabled=*/true);
  }
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
  // Each rank's mean and variance (Welford: no cancellation however large the mean is against
  // the spread), then one reduction of [sum x, sum x^2, count] per channel built from them in
  // float64: the global variance E[x^2] - E[x]^2 is formed in double, where the cancellation
  // that ruins it in float32 (a mean 300 standard deviations from 0) costs nothing.
  at::Tensor local_var;
  at::Tensor local_mean;
  if (count > 0) {
    std::tie(local_var, local_mean) = at::var_mean(x, dims, /*unbiased=*/false, /*keepdim=*/false);
  } else {
    // No slice on this rank: zeros, still computed from x, so that the backward's all-reduce
    // runs here as on the other ranks.
    local_mean = x.sum(dims);
    local_var = x.sum(dims);
  }
  const at::Tensor mean_local = local_mean.to(at::kDouble);
  const at::Tensor local = at::stack({mean_local * count, (local_var.to(at::kDouble) + mean_local.square()) * count,
                                      at::full({channels}, count, mean_local.options())});
  const at::Tensor global = reducer_(local);
  const at::Tensor total = global[2];
  const at::Tensor mean_double = global[0] / total;
  const at::Tensor var_double = (global[1] / total - mean_double.square()).clamp_min(0.0);
  const at::Tensor mean = mean_double.to(x.scalar_type());
  const at::Tensor var = var_double.to(x.scalar_type());
  if (track_running_) {
    // Every rank's batch empty: no statistics, the running ones stay (not 0 / 0).
    at::NoGradGuard no_grad;
    const at::Tensor seen = total.gt(0.0);
    const at::Tensor unbiased = var_double * total / (total - 1.0).clamp_min(1.0);
    const at::Tensor new_mean = running_mean * (1.0 - momentum_) + mean_double.to(running_mean.dtype()) * momentum_;
    const at::Tensor new_var = running_var * (1.0 - momentum_) + unbiased.to(running_var.dtype()) * momentum_;
    running_mean.copy_(at::where(seen, new_mean, running_mean));
    running_var.copy_(at::where(seen, new_var, running_var));
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

RunningStatisticsCalibration::RunningStatisticsCalibration(torch::nn::Module& module) {
  for (const auto& child : module.modules(/*include_self=*/true)) {
    if (auto* norm = child->as<BatchNorm2d>()) {
      norms_.push_back(norm);
      saved_.push_back({norm->running_mean.clone(), norm->running_var.clone(), norm->num_batches_tracked.clone()});
      was_training_.push_back(norm->is_training());
      norm->set_calibration(true);
      norm->train();
    }
  }
}

RunningStatisticsCalibration::~RunningStatisticsCalibration() {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < norms_.size(); ++i) {
    norms_[i]->set_calibration(false);
    norms_[i]->running_mean.copy_(saved_[i][0]);
    norms_[i]->running_var.copy_(saved_[i][1]);
    norms_[i]->num_batches_tracked.copy_(saved_[i][2]);
    norms_[i]->train(was_training_[i]);
  }
}

at::Tensor RunningStatisticsCalibration::sums() const {
  std::vector<at::Tensor> parts;
  for (const auto* norm : norms_) {
    const at::Tensor& s = norm->calibration_sums();
    parts.push_back(s.defined() ? s.flatten() : at::zeros({3 * norm->running_mean.size(0)}, at::kDouble));
  }
  return parts.empty() ? at::zeros({0}, at::kDouble) : at::cat(parts);
}

void RunningStatisticsCalibration::finish(const at::Tensor& flat) {
  at::NoGradGuard no_grad;
  const at::Tensor source = flat.to(at::kCPU, at::kDouble).contiguous();
  int64_t expected = 0;
  for (const auto* norm : norms_) expected += 3 * norm->running_mean.size(0);
  CMAF_CHECK_EQ(source.numel(), expected, "calibration sums: sum x, sum x^2 and a count per channel");
  int64_t offset = 0;
  for (auto* norm : norms_) {
    const int64_t channels = norm->running_mean.size(0);
    const at::Tensor s = source.narrow(0, offset, 3 * channels).view({3, channels});
    offset += 3 * channels;
    const at::Tensor count = s[2];
    const at::Tensor use = count.ge(2.0);
    const at::Tensor n = count.clamp_min(2.0);
    const at::Tensor mean = s[0] / n;
    const at::Tensor var = ((s[1] / n - mean.square()).clamp_min(0.0) * n / (n - 1.0));
    norm->running_mean.copy_(at::where(use, mean, norm->running_mean.to(at::kCPU, at::kDouble)));
    norm->running_var.copy_(at::where(use, var, norm->running_var.to(at::kCPU, at::kDouble)));
    norm->set_calibration(false);
    norm->eval();
  }
}

}  // namespace cmaf::model
