// Supervised loss on labeled slices (METHOD.md section 2).
//
//   softmax (default): cross-entropy + soft Dice over the foreground classes, Dice computed over
//                      the whole batch per class ("batch Dice"), optionally class-weighted.
//   sigmoid (released): per-channel sigmoid on one-hot targets, 0.3 x BCE + 0.5 x soft Dice over
//                      all channels + 0.2 x MSE(logits, one-hot), as the released training code.
//
// Empty classes: Dice_c = (2 I + s) / (P + T + s) with s = kDiceSmooth. A class absent from the
// target scores 1 when nothing is predicted for it and tends to 0 as predicted mass grows, so
// false positives on absent organs are penalised and an empty batch gives no NaN.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace cmaf::losses {

inline constexpr double kDiceSmooth = 1e-5;
inline constexpr double kReleasedBceWeight = 0.3;
inline constexpr double kReleasedDiceWeight = 0.5;
inline constexpr double kReleasedMseWeight = 0.2;

enum class SupervisedMode { kSoftmaxCeDice, kSigmoidReleased };

struct SupervisedLossOptions {
  SupervisedMode mode = SupervisedMode::kSoftmaxCeDice;
  double ce_weight = 1.0;
  double dice_weight = 1.0;
  std::vector<double> class_weights;  // foreground classes 1..K-1; empty: equal weights
};

struct SupervisedLoss {
  at::Tensor total;
  at::Tensor cross_entropy;  // BCE in sigmoid mode
  at::Tensor dice;           // 1 - mean Dice
  at::Tensor mse;            // sigmoid mode only, else undefined
};

// logits [B, K, H, W] (any float type), target [B, H, W] int64 class ids.
SupervisedLoss supervised_loss(const at::Tensor& logits, const at::Tensor& target,
                               const SupervisedLossOptions& options = {});

// Per-class soft Dice of probabilities [B, K, H, W] against one-hot [B, K, H, W]: [K].
at::Tensor soft_dice_per_class(const at::Tensor& probabilities, const at::Tensor& one_hot);

// [B, H, W] int64 -> [B, K, H, W] float.
at::Tensor one_hot_labels(const at::Tensor& target, int64_t classes);

}  // namespace cmaf::losses
