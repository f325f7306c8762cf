#include "losses/supervised_loss.h"
#include "losses/ramp_up.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "tests/losses/finite_difference.h"

namespace cmaf::losses {
namespace {

TEST(SupervisedLoss, CrossEntropyAndDiceByHand) {
  // One sample, 2 classes, 1 x 2 pixels; logits give p(class 1) = sigmoid(l1 - l0).
  const at::Tensor logits = torch::tensor({0.0, 0.0, 0.0, std::log(3.0)}, torch::kDouble).reshape({1, 2, 1, 2});
  const at::Tensor target = torch::tensor({0, 1}, torch::kLong).reshape({1, 1, 2});
  const SupervisedLoss loss = supervised_loss(logits, target);
  // pixel 0: p = (0.5, 0.5), true 0; pixel 1: p = (0.25, 0.75), true 1.
  EXPECT_NEAR(loss.cross_entropy.item<double>(), (-std::log(0.5) - std::log(0.75)) / 2, 1e-12);
  // Foreground Dice: I = 0.75, P = 0.5 + 0.75, T = 1.
  const double dice = (2 * 0.75 + kDiceSmooth) / (1.25 + 1.0 + kDiceSmooth);
  EXPECT_NEAR(loss.dice.item<double>(), 1.0 - dice, 1e-12);
  EXPECT_NEAR(loss.total.item<double>(), loss.cross_entropy.item<double>() + 1.0 - dice, 1e-12);
}

TEST(SupervisedLoss, DiceIsOneForAPerfectPredictionAndZeroForDisjointMasks) {
  const at::Tensor a = torch::tensor({1.0, 1.0, 0.0, 0.0}).reshape({1, 1, 2, 2});
  const at::Tensor b = torch::tensor({0.0, 0.0, 1.0, 1.0}).reshape({1, 1, 2, 2});
  EXPECT_NEAR(soft_dice_per_class(a, a).item<double>(), 1.0, 1e-9);
  EXPECT_NEAR(soft_dice_per_class(a, b).item<double>(), 0.0, 1e-5);
}

TEST(SupervisedLoss, EmptyClassScoresOneWhenNothingIsPredictedAndIsPenalisedOtherwise) {
  const at::Tensor nothing = torch::zeros({1, 1, 2, 2});
  EXPECT_NEAR(soft_dice_per_class(nothing, nothing).item<double>(), 1.0, 1e-12);
  const at::Tensor some = torch::full({1, 1, 2, 2}, 0.25);
  EXPECT_LT(soft_dice_per_class(some, nothing).item<double>(), 1e-4);
  // All-background batch: finite loss, no NaN.
  const SupervisedLoss loss = supervised_loss(torch::randn({2, 4, 8, 8}), torch::zeros({2, 8, 8}, torch::kLong));
  EXPECT_TRUE(std::isfinite(loss.total.item<double>()));
}

TEST(SupervisedLoss, ClassWeightsWeighTheForegroundDice) {
  const at::Tensor logits = torch::randn({1, 3, 4, 4}, torch::kDouble);
  const at::Tensor target = torch::randint(0, 3, {1, 4, 4});
  const at::Tensor per_class = soft_dice_per_class(torch::softmax(logits, 1), one_hot_labels(target, 3).to(torch::kDouble));
  SupervisedLossOptions options;
  options.class_weights = {3.0, 1.0};
  const double expected = 1.0 - (3.0 * per_class[1].item<double>() + per_class[2].item<double>()) / 4.0;
  EXPECT_NEAR(supervised_loss(logits, target, options).dice.item<double>(), expected, 1e-12);
}

TEST(SupervisedLoss, ReleasedSigmoidVariantIsTheWeightedSum) {
  const at::Tensor logits = torch::randn({2, 3, 4, 4}, torch::kDouble);
  const at::Tensor target = torch::randint(0, 3, {2, 4, 4});
  SupervisedLossOptions options;
  options.mode = SupervisedMode::kSigmoidReleased;
  const SupervisedLoss loss = supervised_loss(logits, target, options);
  const at::Tensor y = one_hot_labels(target, 3).to(torch::kDouble);
  const double bce = torch::binary_cross_entropy_with_logits(logits, y).item<double>();
  const double mse = torch::mse_loss(logits, y).item<double>();
  const double dice = 1.0 - soft_dice_per_class(torch::sigmoid(logits), y).mean().item<double>();
  EXPECT_NEAR(loss.total.item<double>(), 0.3 * bce + 0.5 * dice + 0.2 * mse, 1e-12);
}

TEST(SupervisedLoss, GradientsMatchFiniteDifferencesInBothModes) {
  torch::manual_seed(0);
  const at::Tensor target = torch::randint(0, 3, {1, 3, 3});
  const at::Tensor logits = torch::randn({1, 3, 3, 3}, torch::kDouble);
  for (SupervisedMode mode : {SupervisedMode::kSoftmaxCeDice, SupervisedMode::kSigmoidReleased}) {
    SupervisedLossOptions options;
    options.mode = mode;
    test::expect_gradient_matches_finite_differences(
        [&](const at::Tensor& x) { return supervised_loss(x, target, options).total; }, logits);
  }
}

TEST(RampUp, SigmoidScheduleFromExpMinus5ToOne) {
  EXPECT_DOUBLE_EQ(sigmoid_ramp_up(0, 100), std::exp(-5.0));
  EXPECT_DOUBLE_EQ(sigmoid_ramp_up(50, 100), std::exp(-5.0 * 0.25));
  EXPECT_DOUBLE_EQ(sigmoid_ramp_up(100, 100), 1.0);
  EXPECT_DOUBLE_EQ(sigmoid_ramp_up(7, 0), 1.0);
  double previous = 0.0;
  for (int64_t t = 0; t <= 100; ++t) {
    EXPECT_GE(sigmoid_ramp_up(t, 100), previous);
    previous = sigmoid_ramp_up(t, 100);
  }
}

TEST(RampUp, ADelayedRampIsZeroBeforeItsStartAndCountsFromIt) {
  EXPECT_EQ(delayed_ramp_up(0, 30, 100), 0.0);
  EXPECT_EQ(delayed_ramp_up(29, 30, 100), 0.0);
  EXPECT_DOUBLE_EQ(delayed_ramp_up(30, 30, 100), std::exp(-5.0));
  EXPECT_DOUBLE_EQ(delayed_ramp_up(80, 30, 100), sigmoid_ramp_up(50, 100));
  EXPECT_DOUBLE_EQ(delayed_ramp_up(130, 30, 100), 1.0);
  EXPECT_DOUBLE_EQ(delayed_ramp_up(29, 30, 0), 0.0);
  EXPECT_DOUBLE_EQ(delayed_ramp_up(30, 30, 0), 1.0);
  EXPECT_DOUBLE_EQ(delayed_ramp_up(12, 0, 100), sigmoid_ramp_up(12, 100));
}

}  // namespace
}  // namespace cmaf::losses
