#include "model/blocks.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "model/batch_norm.h"
#include "model/transformer_layers.h"

namespace cmaf::model {
namespace {

void fill_parameters(torch::nn::Module& module, double weight, double bias) {
  torch::NoGradGuard no_grad;
  for (const auto& p : module.named_parameters()) {
    const bool is_bias = p.key().find("bias") != std::string::npos;
    p.value().fill_(is_bias ? bias : weight);
  }
}

// Each block's output shape, at two input sizes.
TEST(Blocks, OutputShapesAtTwoSizes) {
  torch::NoGradGuard no_grad;
  for (int64_t size : {32, 48}) {
    const torch::Tensor x = torch::randn({2, 8, size, size});
    EXPECT_EQ(ResidualConv(8, 16, 2)->forward(x).sizes(), (std::vector<int64_t>{2, 16, size / 2, size / 2}));
    EXPECT_EQ(ResidualConv(8, 4, 1)->forward(x).sizes(), (std::vector<int64_t>{2, 4, size, size}));
    EXPECT_EQ(ChannelAttention(8)->forward(x).sizes(), x.sizes());
    EXPECT_EQ(Aspp(8, 6)->forward(x).sizes(), (std::vector<int64_t>{2, 6, size, size}));
    EXPECT_EQ(PixelAttention(8)->forward(x).sizes(), x.sizes());
    EXPECT_EQ(PatchEmbed(8, 12)->forward(x).sizes(), (std::vector<int64_t>{2, 12, size / 2, size / 2}));
    const torch::Tensor d = torch::randn({2, 5, size, size});
    EXPECT_EQ(AttentionGate(8, 5, 7, false)->forward(x, d).sizes(), d.sizes());
    const torch::Tensor tokens = map_to_tokens(x);
    EXPECT_EQ(tokens.sizes(), (std::vector<int64_t>{size * size, 2, 8}));
    EXPECT_EQ(EncoderLayer(TransformerLayerOptions{8, 2, 4, 0.0})->forward(tokens).sizes(), tokens.sizes());
  }
}

TEST(Blocks, TokenMapRoundTripKeepsEveryFeatureInPlace) {
  const torch::Tensor map = torch::arange(2 * 3 * 4 * 5).reshape({2, 3, 4, 5}).to(torch::kFloat);
  const torch::Tensor tokens = map_to_tokens(map);
  // Token n = y * w + x of sample b holds that pixel's channel vector.
  EXPECT_EQ(tokens[1 * 5 + 2][1][2].item<float>(), map[1][2][1][2].item<float>());
  EXPECT_TRUE(torch::equal(tokens_to_map(tokens, 4, 5), map));
}

TEST(Blocks, SqueezeExcitationByHand) {
  ChannelAttention se(32);  // hidden = 32 / 16 = 2
  fill_parameters(*se, 0.01, 0.0);
  // Channel c is constant c / 32: pooled = c / 32; hidden = relu(0.01 * sum_c c/32) each;
  // weight = sigmoid(0.01 * 2 * hidden).
  torch::Tensor x = torch::arange(32).to(torch::kFloat).div(32).reshape({1, 32, 1, 1}).expand({1, 32, 3, 3}).contiguous();
  const double hidden = 0.01 * (31.0 * 32.0 / 2.0) / 32.0;
  const double weight = 1.0 / (1.0 + std::exp(-0.01 * 2.0 * hidden));
  const torch::Tensor y = se->forward(x);
  for (int c : {0, 5, 31}) EXPECT_NEAR(y[0][c][1][1].item<double>(), c / 32.0 * weight, 1e-6);
}

TEST(Blocks, PixelAttentionByHand) {
  PixelAttention pa(3);
  fill_parameters(*pa, 0.0, 0.5);  // depthwise conv outputs its bias: gate = sigmoid(0.5)
  const torch::Tensor x = torch::randn({1, 3, 5, 5});
  EXPECT_TRUE(torch::allclose(pa->forward(x), x / (1.0 + std::exp(-0.5))));
}

TEST(Blocks, ResidualConvOnAConstantInputByHand) {
  ResidualConv block(2, 3, 1);
  block->eval();  // BN with running mean 0, var 1, gamma 1, beta 0: x / sqrt(1 + eps)
  fill_parameters(*block, 0.1, 0.0);
  {
    torch::NoGradGuard no_grad;
    for (const auto& p : block->named_parameters()) {
      if (p.key().find("bn") != std::string::npos) p.value().fill_(p.key().find("weight") != std::string::npos ? 1.0 : 0.0);
    }
  }
  const double k = 1.0 / std::sqrt(1.0 + 1e-5);
  // Interior pixel: main = conv2(relu(bn2(conv1(relu(bn1(1)))))) = 27 * 0.1 * (18 * 0.1 * k) * k,
  // skip = bn(conv(1)) = 18 * 0.1 * k.
  const double expected = 2.7 * 1.8 * k * k + 1.8 * k;
  const torch::Tensor y = block->forward(torch::ones({1, 2, 8, 8}));
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(y[0][c][4][4].item<double>(), expected, 1e-5);
}

TEST(Blocks, AttentionGateWithAndWithoutSigmoid) {
  AttentionGate plain(2, 2, 2, false), gated(2, 2, 2, true);
  fill_parameters(*plain, 0.0, 3.0);  // the 1x1 attention conv then outputs its bias, 3
  fill_parameters(*gated, 0.0, 3.0);
  const torch::Tensor e = torch::randn({1, 2, 4, 4});
  const torch::Tensor d = torch::randn({1, 2, 4, 4});
  EXPECT_TRUE(torch::allclose(plain->forward(e, d), 3.0 * d));
  EXPECT_TRUE(torch::allclose(gated->forward(e, d), d / (1.0 + std::exp(-3.0))));
}


// FrozenRunningStatistics: a training forward still normalises with the batch's own statistics
// but leaves running mean, variance and the batch count alone, on the local and on the
// synchronised path (an identity reducer stands in for one rank); afterwards tracking resumes.
TEST(Blocks, FrozenRunningStatisticsLeaveTheRunningBuffersAlone) {
  for (bool synchronised : {false, true}) {
    BatchNorm2d norm(3, 1e-5, 0.1);
    if (synchronised) norm->set_statistics_reducer([](const at::Tensor& t) { return t; });
    norm->train();
    const torch::Tensor x = torch::randn({4, 3, 5, 5}) * 2.0 + 3.0;
    const torch::Tensor before_mean = norm->running_mean.clone(), before_var = norm->running_var.clone();
    torch::Tensor frozen_out;
    {
      const FrozenRunningStatistics frozen(*norm);
      frozen_out = norm->forward(x);
    }
    EXPECT_TRUE(torch::equal(norm->running_mean, before_mean)) << "synchronised " << synchronised;
    EXPECT_TRUE(torch::equal(norm->running_var, before_var)) << "synchronised " << synchronised;
    EXPECT_EQ(norm->num_batches_tracked.item<int64_t>(), 0);
    // Normalised with the batch statistics: per channel mean 0, variance 1 (weight 1, bias 0).
    EXPECT_LT(frozen_out.mean({0, 2, 3}).abs().max().item<double>(), 1e-5);
    EXPECT_NEAR(frozen_out.var({0, 2, 3}, false).mean().item<double>(), 1.0, 1e-3);
    const torch::Tensor tracked_out = norm->forward(x);
    EXPECT_TRUE(torch::allclose(tracked_out, frozen_out, 1e-5, 1e-5));
    EXPECT_FALSE(torch::equal(norm->running_mean, before_mean)) << "tracking resumes after the guard";
    EXPECT_EQ(norm->num_batches_tracked.item<int64_t>(), 1);
  }
}

// RunningStatisticsCalibration: the running statistics become the population mean and unbiased
// variance of everything forwarded under it (computed here by hand over the concatenated
// batches, so the spread between batches counts), on both paths; only the batch norms go to
// training mode (a dropout beside them stays off) and they normalise with batch statistics
// meanwhile; sums from two "ranks" add up; a wrong-length sum is refused; destruction restores
// statistics, modes and the batch count.
TEST(Blocks, RunningStatisticsCalibrationEstimatesThePopulationStatistics) {
  for (bool synchronised : {false, true}) {
    torch::nn::Sequential net(BatchNorm2d(3, 1e-5, 0.1), torch::nn::Dropout(0.5), BatchNorm2d(3, 1e-5, 0.1));
    auto first = net->ptr<BatchNorm2dImpl>(0);
    if (synchronised) set_statistics_reducer(*net, [](const at::Tensor& t) { return t; });
    {
      torch::NoGradGuard no_grad;
      first->running_mean.fill_(7.0);
      first->running_var.fill_(9.0);
    }
    net->eval();
    const std::vector<torch::Tensor> batches{torch::randn({4, 3, 5, 5}) * 2.0 + 3.0, torch::randn({2, 3, 5, 5}) - 1.0,
                                             torch::randn({4, 3, 5, 5}) * 0.5};
    const torch::Tensor all = torch::cat(batches).to(torch::kDouble);
    const torch::Tensor mean = all.mean({0, 2, 3}), var = all.var({0, 2, 3}, /*unbiased=*/true);
    {
      RunningStatisticsCalibration calibration(*net);
      EXPECT_TRUE(first->is_training());
      EXPECT_FALSE(net[1]->is_training()) << "the dropout stays as the caller left it";
      torch::NoGradGuard no_grad;
      // "Rank 0" forwards the first batch, "rank 1" (a second calibration below) the others.
      const torch::Tensor y = net->forward(batches[0]);
      EXPECT_LT(y.mean({0, 2, 3}).abs().max().item<double>(), 1e-4) << "normalised with the batch's statistics";
      EXPECT_TRUE(torch::allclose(y, net->forward(batches[0]))) << "no dropout";
      at::Tensor sums = calibration.sums();
      EXPECT_EQ(sums.numel(), 18);
      EXPECT_THROW(calibration.finish(torch::zeros({17}, torch::kDouble)), std::exception);
      sums = sums / 2.0;  // the first batch was forwarded twice
      {
        RunningStatisticsCalibration other(*net);
        net->forward(batches[1]);
        net->forward(batches[2]);
        sums += other.sums();
      }
      EXPECT_TRUE(first->is_training()) << "the inner calibration restored the outer's mode";
      calibration.finish(sums);
      EXPECT_FALSE(first->is_training());
      EXPECT_TRUE(torch::allclose(first->running_mean.to(torch::kDouble), mean, 1e-5, 1e-5)) << synchronised;
      EXPECT_TRUE(torch::allclose(first->running_var.to(torch::kDouble), var, 1e-4, 1e-4)) << synchronised;
      const torch::Tensor x = torch::randn({1, 3, 2, 2});
      const torch::Tensor expected = (x.to(torch::kDouble) - mean.view({1, 3, 1, 1})) / (var.view({1, 3, 1, 1}) + 1e-5).sqrt();
      EXPECT_TRUE(torch::allclose(net[0]->as<BatchNorm2d>()->forward(x).to(torch::kDouble), expected, 1e-4, 1e-4));
    }
    EXPECT_FALSE(first->is_training());
    EXPECT_TRUE(torch::allclose(first->running_mean, torch::full({3}, 7.0)));
    EXPECT_TRUE(torch::allclose(first->running_var, torch::full({3}, 9.0)));
    EXPECT_EQ(first->num_batches_tracked.item<int64_t>(), 0);
    // Tracking is exponential again afterwards: momentum 0.1.
    net->train();
    torch::NoGradGuard no_grad;
    net->forward(batches[0]);
    EXPECT_TRUE(torch::allclose(first->running_mean, 0.9 * 7.0 + 0.1 * batches[0].mean({0, 2, 3}), 1e-5, 1e-5));
  }
}

}  // namespace
}  // namespace cmaf::model
