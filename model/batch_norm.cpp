#include "model/batch_norm.h"

#include <torch/csrc/autograd/custom_function.h>

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

namespace {

// Normalisation with statistics over all ranks, and its backward. The forward is eval-mode batch
// norm with the global mean and variance (one fused pass). The backward takes each rank's sums of
// dy and dy * (x - mean) per channel (on the CPU one fused pass: eval-mode batch norm's weight
// and bias gradients), sums them over the ranks through the reducer in float64 (every rank's x
// moved the mean and the variance), and forms dx = w * invstd * (dy - mean(dy) - (x - mean) *
// invstd^2 * mean(dy * (x - mean))) in two more passes, as PyTorch's SyncBatchNorm does. Autograd
// through the same formula written with tensor operations took 8 to 10 passes over the
// activations: on the half preset's 2-rank step, 0.15 s more forward and 0.1-0.2 s more backward
// than local batch norm.
struct SynchronisedNormalisation : public torch::autograd::Function<SynchronisedNormalisation> {
  // mean and var: the global statistics in float64; total: the global count (float64, per
  // channel). `reducer` is the module's: the module must outlive the backward.
  static at::Tensor forward(torch::autograd::AutogradContext* context, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias, const at::Tensor& mean, const at::Tensor& var,
                            const at::Tensor& total, double eps, const StatisticsReducer* reducer) {
    // The kernels take parameters of the input's type (a float64 input, float32 parameters).
    const at::Tensor weight_x = weight.to(x.scalar_type());
    const at::Tensor mean_x = mean.to(x.scalar_type());
    const at::Tensor var_x = var.to(x.scalar_type());
    context->save_for_backward({x, weight_x, mean_x, var_x});
    context->saved_data["weight_type"] = static_cast<int64_t>(weight.scalar_type());
    context->saved_data["mean"] = mean;
    context->saved_data["invstd"] = (var + eps).rsqrt();
    context->saved_data["total"] = total;
    context->saved_data["eps"] = eps;
    context->saved_data["reducer"] = reinterpret_cast<int64_t>(reducer);
    return at::batch_norm(x, weight_x, bias.to(x.scalar_type()), mean_x, var_x, /*training=*/false, 0.0, eps,
                          /*cudnn_enabled=*/true);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                 torch::autograd::variable_list gradients) {
    const auto saved = context->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor dy = gradients[0].defined() ? gradients[0] : at::zeros_like(x);
    const at::Tensor mean = context->saved_data["mean"].toTensor();
    const at::Tensor invstd = context->saved_data["invstd"].toTensor();
    const at::Tensor total = context->saved_data["total"].toTensor();
    const auto weight_type = static_cast<at::ScalarType>(context->saved_data["weight_type"].toInt());
    const auto* reducer = reinterpret_cast<const StatisticsReducer*>(context->saved_data["reducer"].toInt());
    CMAF_CHECK(*reducer, "synchronised batch norm: the statistics reducer was removed between forward and backward");
    const int64_t channels = x.size(1);
    const std::vector<int64_t> shape{1, channels, 1, 1};
    // This rank's sum(dy) and sum(dy * (x - mean)) per channel, in float64.
    at::Tensor sum_dy, sum_dy_xmu;
    if (x.numel() == 0) {
      sum_dy = at::zeros({channels}, mean.options());
      sum_dy_xmu = at::zeros({channels}, mean.options());
    } else if (x.is_cpu()) {
      // One fused pass: eval-mode batch norm's weight and bias gradients, sum(dy * (x - mean)) *
      // invstd and sum(dy).
      const double eps = context->saved_data["eps"].toDouble();
      at::Tensor weight_grad, bias_grad;
      std::tie(std::ignore, weight_grad, bias_grad) = at::native_batch_norm_backward(
          dy, x, weight, saved[2], saved[3], at::Tensor(), at::Tensor(), /*train=*/false, eps, {false, true, true});
      sum_dy = bias_grad.to(at::kDouble);
      sum_dy_xmu = weight_grad.to(at::kDouble) / invstd;
    } else {
      // Other devices: plain reductions (CUDA's batch-norm backward asks for the saved batch
      // statistics that eval mode does not have).
      const std::vector<int64_t> dims{0, 2, 3};
      sum_dy = at::sum(dy, dims, /*keepdim=*/false, at::kDouble);
      sum_dy_xmu = at::sum(dy * (x - saved[2].view(shape)), dims, /*keepdim=*/false, at::kDouble);
    }
    // Every rank's: the backward's collective runs on every rank, an empty batch included.
    at::Tensor global;
    {
      at::NoGradGuard no_grad;
      global = (*reducer)(at::stack({sum_dy, sum_dy_xmu}));
    }
    const at::Tensor count = total.clamp_min(1.0);
    const at::Tensor mean_dy = global[0] / count;
    const at::Tensor mean_dy_xmu = global[1] / count;
    // dx = dy * k1 + x * k2 + k3, per channel.
    const at::Tensor k1 = weight.to(at::kDouble) * invstd;
    const at::Tensor k2 = -k1 * invstd.square() * mean_dy_xmu;
    const at::Tensor k3 = -k1 * mean_dy - mean * k2;
    // x * k2 + k3 in one pass, in x's layout: eval-mode batch norm with mean 0, variance 1 and
    // eps 0 (its scale is k2 / sqrt(1) = k2 exactly); addcmul broadcasting k3 took 3.5 times as
    // long on a [2, 32, 256, 256] NCHW gradient.
    const at::Tensor zero = at::zeros({channels}, x.options());
    const at::Tensor one = at::ones({channels}, x.options());
    at::Tensor dx = at::batch_norm(x, k2.to(x.scalar_type()), k3.to(x.scalar_type()), zero, one, /*training=*/false,
                                   0.0, /*eps=*/0.0, /*cudnn_enabled=*/false);
    dx.addcmul_(dy, k1.to(x.scalar_type()).view(shape));
    // The parameters' gradients are this rank's (the gradient reducer averages them).
    return {dx, (sum_dy_xmu * invstd).to(weight_type), sum_dy.to(weight_type), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor BatchNorm2dImpl::synchronised_forward(const at::Tensor& input) {
  const at::Tensor x = input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble
                           ? input
                           : input.to(at::kFloat);  // statistics in fp32 under autocast
  const int64_t channels = x.size(1);
  const double count = static_cast<double>(x.numel() / channels);
  at::Tensor mean_double, var_double, total;
  {
    // The statistics carry no graph: SynchronisedNormalisation's backward accounts for them.
    at::NoGradGuard no_grad;
    // Each rank's mean and (biased) variance from the kernel local batch norm uses (two passes:
    // no cancellation however large the mean is against the spread; 4 to 20 times faster than
    // var_mean over the same dimensions), then one reduction of [sum x, sum x^2, count] per
    // channel built from them in float64: the global variance E[x^2] - E[x]^2 is formed in
    // double, where the cancellation that ruins it in float32 (a mean 300 standard deviations
    // from 0) costs nothing.
    at::Tensor local_var;
    at::Tensor local_mean;
    if (count > 0) {
      std::tie(local_mean, local_var) = at::batch_norm_update_stats(x, at::Tensor(), at::Tensor(), momentum_);
    } else {
      // No slice on this rank: zeros. The all-reduce runs here as on the other ranks.
      local_mean = at::zeros({channels}, x.options());
      local_var = at::zeros({channels}, x.options());
    }
    // Few operations on these [C] tensors: each costs microseconds whatever its size, and there
    // are 34 such layers in the half preset.
    const at::Tensor mean_local = local_mean.to(at::kDouble);
    const at::Tensor local =
        at::stack({mean_local, local_var.to(at::kDouble).add_(mean_local.square()), at::ones_like(mean_local)})
            .mul_(count);
    const at::Tensor global = reducer_(local);
    total = global[2];
    // Every rank's batch empty: no statistics (0 / 0). The output is empty everywhere; the
    // running statistics stay as they were.
    const at::Tensor seen = total.gt(0.0);
    mean_double = at::where(seen, global[0] / total, 0.0);
    var_double = at::where(seen, (global[1] / total).sub_(mean_double.square()).clamp_min_(0.0), 1.0);
    if (track_running_) {
      const at::Tensor weight = seen.to(running_mean.scalar_type()).mul_(momentum_);
      const at::Tensor unbiased = var_double * total / (total - 1.0).clamp_min_(1.0);
      running_mean.lerp_(mean_double.to(running_mean.scalar_type()), weight);
      running_var.lerp_(unbiased.to(running_var.scalar_type()), weight);
    }
  }
  return SynchronisedNormalisation::apply(x, weight, bias, mean_double, var_double, total, eps_, &reducer_);
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
