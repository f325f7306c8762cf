#include "losses/supervised_loss.h"

#include "common/error.h"
#include "losses/loss_precision.h"

namespace cmaf::losses {

at::Tensor one_hot_labels(const at::Tensor& target, int64_t classes) {
  CMAF_CHECK_EQ(target.dim(), 3, "target must be [B, H, W]");
  return at::one_hot(target, classes).permute({0, 3, 1, 2}).to(at::kFloat).contiguous();
}

at::Tensor soft_dice_per_class(const at::Tensor& probabilities, const at::Tensor& one_hot) {
  const std::vector<int64_t> dims{0, 2, 3};
  const at::Tensor intersection = (probabilities * one_hot).sum(dims);
  const at::Tensor denominator = probabilities.sum(dims) + one_hot.sum(dims);
  return (2.0 * intersection + kDiceSmooth) / (denominator + kDiceSmooth);
}

SupervisedLoss supervised_loss(const at::Tensor& logits, const at::Tensor& target,
                               const SupervisedLossOptions& options) {
  CMAF_CHECK_EQ(logits.dim(), 4, "logits must be [B, K, H, W]");
  const int64_t classes = logits.size(1);
  CMAF_CHECK(target.sizes() == at::IntArrayRef({logits.size(0), logits.size(2), logits.size(3)}),
             "target ", target.sizes(), " does not match logits ", logits.sizes());
  const at::Tensor x = widened(logits);
  const at::Tensor y = one_hot_labels(target, classes).to(x.dtype());
  SupervisedLoss out;
  if (options.mode == SupervisedMode::kSigmoidReleased) {
    out.cross_entropy = at::binary_cross_entropy_with_logits(x, y);
    out.dice = 1.0 - soft_dice_per_class(at::sigmoid(x), y).mean();
    out.mse = at::mse_loss(x, y);
    out.total = kReleasedBceWeight * out.cross_entropy + kReleasedDiceWeight * out.dice +
                kReleasedMseWeight * out.mse;
    return out;
  }
  out.cross_entropy = at::cross_entropy_loss(x, target);
  CMAF_CHECK(classes >= 2, "soft Dice over foreground classes needs >= 2 classes");
  const at::Tensor dice = soft_dice_per_class(at::softmax(x, 1), y).slice(0, 1);  // foreground
  at::Tensor weights = at::ones({classes - 1}, x.options());
  if (!options.class_weights.empty()) {
    CMAF_CHECK_EQ(static_cast<int64_t>(options.class_weights.size()), classes - 1,
                  "class_weights has one weight per foreground class");
    weights = at::tensor(options.class_weights, at::kDouble).to(x.options());
  }
  out.dice = 1.0 - (dice * weights).sum() / weights.sum();
  out.total = options.ce_weight * out.cross_entropy + options.dice_weight * out.dice;
  return out;
}

}  // namespace cmaf::losses
