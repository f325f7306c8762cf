// Synchronised batch norm over ranks-as-threads equals batch norm over the whole batch.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include "cluster/differentiable_all_reduce.h"
#include "common/error.h"
#include "model/batch_norm.h"
#include "tests/cluster/collective_checks.h"

namespace cmaf::test {
namespace {

// Scale and shift other than 1 and 0 (both enter the gradients), the same on every copy.
void set_affine(model::BatchNorm2d& norm, const at::Tensor& weight, const at::Tensor& bias) {
  at::NoGradGuard no_grad;
  norm->weight.copy_(weight);
  norm->bias.copy_(bias);
}

// One batch norm per rank (ranks as threads), rank r normalising slices bounds[r] to
// bounds[r + 1] of `input` with statistics over all ranks, each with the loss sum(y * weights):
// the outputs and input gradients in batch order, the parameter gradients summed over ranks
// (what the gradient reducer's sum gives), each rank's running statistics.
struct SplitRun {
  at::Tensor output, input_grad, weight_grad, bias_grad;
  std::vector<at::Tensor> weight_grads, running_means, running_vars;  // per rank
};
SplitRun run_split(const at::Tensor& input, const at::Tensor& loss_weights, const std::vector<int64_t>& bounds,
                   const at::Tensor& scale, const at::Tensor& shift) {
  const int ranks = static_cast<int>(bounds.size()) - 1;
  const auto format = input.suggest_memory_format();
  std::vector<at::Tensor> outputs(ranks), input_grads(ranks), weight_grads(ranks), bias_grads(ranks);
  SplitRun run;
  run.running_means.resize(ranks);
  run.running_vars.resize(ranks);
  run_as_threads(ranks, [&](cluster::Communicator& c) {
    const int r = c.rank();
    model::BatchNorm2d norm(input.size(1), 1e-5, 0.1);
    set_affine(norm, scale, shift);
    norm->set_statistics_reducer(cluster::statistics_reducer(c));
    const at::Tensor x = input.slice(0, bounds[r], bounds[r + 1]).clone(format).requires_grad_(true);
    const at::Tensor y = norm->forward(x);
    (y * loss_weights.slice(0, bounds[r], bounds[r + 1])).sum().backward();
    outputs[r] = y.detach();
    input_grads[r] = x.grad();
    weight_grads[r] = norm->weight.grad();
    bias_grads[r] = norm->bias.grad();
    run.running_means[r] = norm->running_mean.clone();
    run.running_vars[r] = norm->running_var.clone();
  });
  run.output = at::cat(outputs);
  run.input_grad = at::cat(input_grads);
  run.weight_grad = at::stack(weight_grads).sum(0);
  run.weight_grads = weight_grads;
  run.bias_grad = at::stack(bias_grads).sum(0);
  return run;
}

TEST(SyncBatchNorm, TwoRanksEqualOneBatchNormOverTheWholeBatch) {
  at::Generator generator = at::detail::createCPUGenerator(3);
  const at::Tensor full_input = at::randn({4, 3, 5, 5}, generator) * 2.0 + 1.0;
  const at::Tensor loss_weights = at::randn({4, 3, 5, 5}, generator);
  const at::Tensor scale = at::randn({3}, generator), shift = at::randn({3}, generator);

  model::BatchNorm2d reference(3, 1e-5, 0.1);
  set_affine(reference, scale, shift);
  const at::Tensor x = full_input.clone().requires_grad_(true);
  const at::Tensor y = reference->forward(x);
  (y * loss_weights).sum().backward();

  const SplitRun run = run_split(full_input, loss_weights, {0, 2, 4}, scale, shift);
  EXPECT_TRUE(torch::allclose(run.output, y.detach(), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(run.input_grad, x.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(run.weight_grad, reference->weight.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(run.running_vars[0], reference->running_var, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(run.running_vars[1], reference->running_var, 1e-5, 1e-6));
}

// Uneven splits of one batch over two ranks (3 + 1 slices, and 4 + 0: a rank with none), two
// steps each: outputs, input and weight gradients, and the running statistics are those of one
// batch norm over the whole batch, also for an input whose mean is 3000 standard deviations: in
// float32, E[x^2] - E[x]^2 alone would lose the variance to cancellation (errors of order 1).
// The reference runs in float64. At 3000 standard deviations any float32 batch norm (PyTorch's
// too) rounds the mean to float32 (half an ulp of 3000: 1.2e-4) before x - mean, and the weight
// gradient sum(dy * (x - mean)) * invstd carries that times sum(dy): its tolerance there is
// 2.5e-4 * sum |dy| (2e-2 here).
TEST(SyncBatchNorm, UnevenSplitsAndAFarFromZeroMeanEqualOneBatchNorm) {
  for (const int64_t first : {int64_t{3}, int64_t{4}}) {
    for (const double offset : {1.0, 3000.0}) {
      at::Generator generator = at::detail::createCPUGenerator(11);
      const at::Tensor scale = at::randn({3}, generator), shift = at::randn({3}, generator);
      model::BatchNorm2d reference(3, 1e-5, 0.1);
      std::vector<model::BatchNorm2d> norms{model::BatchNorm2d(3, 1e-5, 0.1), model::BatchNorm2d(3, 1e-5, 0.1)};
      set_affine(reference, scale, shift);
      reference->to(at::kDouble);
      for (model::BatchNorm2d& norm : norms) set_affine(norm, scale, shift);
      for (int step = 0; step < 2; ++step) {
        const at::Tensor full_input = at::randn({4, 3, 5, 5}, generator) + offset;
        const at::Tensor loss_weights = at::randn({4, 3, 5, 5}, generator);
        const at::Tensor x = full_input.to(at::kDouble).requires_grad_(true);
        const at::Tensor y = reference->forward(x);
        (y * loss_weights.to(at::kDouble)).sum().backward();
        std::vector<at::Tensor> outputs(2), input_grads(2), weight_grads(2);
        run_as_threads(2, [&](cluster::Communicator& c) {
          const int r = c.rank();
          model::BatchNorm2d& norm = norms[static_cast<size_t>(r)];
          norm->set_statistics_reducer(cluster::statistics_reducer(c));
          norm->zero_grad();
          const int64_t begin = r == 0 ? 0 : first;
          const int64_t end = r == 0 ? first : 4;
          const at::Tensor xr = full_input.slice(0, begin, end).clone().requires_grad_(true);
          const at::Tensor yr = norm->forward(xr);
          (yr * loss_weights.slice(0, begin, end)).sum().backward();
          outputs[r] = yr.detach();
          input_grads[r] = xr.grad();
          weight_grads[r] = norm->weight.grad();
        });
        const std::string where = str(first, " + ", 4 - first, " slices, mean ", offset, ", step ", step);
        const auto near = [](const at::Tensor& ours, const at::Tensor& truth, double rtol, double atol) {
          return torch::allclose(ours.to(at::kDouble), truth.detach(), rtol, atol);
        };
        EXPECT_TRUE(near(at::cat(outputs), y, 1e-3, 1e-3)) << where;
        EXPECT_TRUE(near(at::cat(input_grads), x.grad(), 1e-3, 1e-3)) << where;
        const double weight_tolerance =
            offset > 1.0 ? 2.5e-4 * loss_weights.abs().sum({0, 2, 3}).max().item<double>() : 1e-3;
        EXPECT_TRUE(near(weight_grads[0] + weight_grads[1], reference->weight.grad(), 1e-3, weight_tolerance))
            << where << ": " << weight_grads[0] + weight_grads[1] << " vs " << reference->weight.grad();
        for (const model::BatchNorm2d& norm : norms) {
          EXPECT_TRUE(near(norm->running_mean, reference->running_mean, 1e-5, 1e-4)) << where;
          EXPECT_TRUE(near(norm->running_var, reference->running_var, 1e-4, 1e-4))
              << where << ": " << norm->running_var << " vs " << reference->running_var;
        }
        reference->zero_grad();
      }
    }
  }
}

// Three ranks with 2, 0 and 3 slices of a channels-last batch (the trainer's layout): outputs,
// input gradients, and the ranks' weight and bias gradients summed, against one batch norm.
TEST(SyncBatchNorm, ChannelsLastOverThreeUnevenRanksEqualsOneBatchNorm) {
  at::Generator generator = at::detail::createCPUGenerator(5);
  const at::Tensor full_input =
      (at::randn({5, 4, 6, 7}, generator) * 3.0 - 2.0).contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor loss_weights = at::randn({5, 4, 6, 7}, generator);
  const at::Tensor scale = at::randn({4}, generator), shift = at::randn({4}, generator);
  model::BatchNorm2d reference(4, 1e-5, 0.1);
  set_affine(reference, scale, shift);
  const at::Tensor x = full_input.clone().requires_grad_(true);
  const at::Tensor y = reference->forward(x);
  (y * loss_weights).sum().backward();
  const SplitRun run = run_split(full_input, loss_weights, {0, 2, 2, 5}, scale, shift);
  EXPECT_TRUE(torch::allclose(run.output, y.detach(), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(run.input_grad, x.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(run.weight_grad, reference->weight.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(run.bias_grad, reference->bias.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(run.weight_grads[1].eq(0.0).all().item<bool>())
      << "the empty rank's weight gradient " << run.weight_grads[1];
  for (const at::Tensor& mean : run.running_means) {
    EXPECT_TRUE(torch::allclose(mean, reference->running_mean, 1e-5, 1e-6));
  }
}

// A float64 input with the module's float32 parameters (the kernels take one type): outputs and
// input gradients in float64, parameter gradients in float32, as one batch norm gives them.
TEST(SyncBatchNorm, AFloat64InputWithFloat32Parameters) {
  at::Generator generator = at::detail::createCPUGenerator(9);
  const at::Tensor full_input = at::randn({4, 2, 3, 3}, generator).to(at::kDouble) * 4.0 + 2.0;
  const at::Tensor loss_weights = at::randn({4, 2, 3, 3}, generator).to(at::kDouble);
  model::BatchNorm2d reference(2, 1e-5, 0.1);
  const at::Tensor x = full_input.clone().requires_grad_(true);
  const at::Tensor y = reference->forward(x.to(at::kFloat));
  (y.to(at::kDouble) * loss_weights).sum().backward();
  const SplitRun run = run_split(full_input, loss_weights, {0, 2, 4}, at::ones({2}), at::zeros({2}));
  EXPECT_EQ(run.output.scalar_type(), at::kDouble);
  EXPECT_EQ(run.input_grad.scalar_type(), at::kDouble);
  EXPECT_EQ(run.weight_grad.scalar_type(), at::kFloat);
  EXPECT_TRUE(torch::allclose(run.output, y.detach().to(at::kDouble), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(run.input_grad, x.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(run.weight_grad, reference->weight.grad(), 1e-4, 1e-5));
}

// Every rank's batch empty: no statistics to take, and the running ones stay as they were (not
// 0 / 0 = NaN for the rest of the run).
TEST(SyncBatchNorm, AnEmptyBatchOnEveryRankLeavesTheRunningStatistics) {
  run_as_threads(2, [&](cluster::Communicator& c) {
    model::BatchNorm2d norm(3, 1e-5, 0.1);
    norm->set_statistics_reducer(cluster::statistics_reducer(c));
    const at::Tensor y = norm->forward(at::randn({0, 3, 5, 5}).requires_grad_(true));
    EXPECT_EQ(y.numel(), 0);
    y.sum().backward();
    EXPECT_TRUE(norm->running_mean.eq(0.0).all().item<bool>()) << norm->running_mean;
    EXPECT_TRUE(norm->running_var.eq(1.0).all().item<bool>()) << norm->running_var;
  });
}

TEST(SyncBatchNorm, WithoutAReducerItIsPlainBatchNorm) {
  model::BatchNorm2d ours(4, 1e-5, 0.1);
  torch::nn::BatchNorm2d theirs(torch::nn::BatchNorm2dOptions(4));
  const at::Tensor x = torch::randn({3, 4, 6, 6});
  EXPECT_TRUE(torch::allclose(ours->forward(x), theirs->forward(x), 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(ours->running_var, theirs->running_var, 1e-6, 1e-6));
  ours->eval();
  theirs->eval();
  EXPECT_TRUE(torch::allclose(ours->forward(x), theirs->forward(x), 1e-6, 1e-6));
}

}  // namespace
}  // namespace cmaf::test
