#include "losses/ldc_statistics.h"

#include "common/error.h"
#include "losses/loss_precision.h"
#include "losses/supervised_loss.h"

namespace cmaf::losses {

at::Tensor LdcStatistics::stacked() const { return at::stack({intersection, prediction, target}); }

LdcStatistics LdcStatistics::from_stacked(const at::Tensor& stacked) {
  CMAF_CHECK(stacked.dim() == 2 && stacked.size(0) == 3, "LDC statistics are [3, K-1], got ",
             stacked.sizes());
  return {stacked[0], stacked[1], stacked[2]};
}

LdcStatistics LdcStatistics::detached() const {
  return {intersection.detach(), prediction.detach(), target.detach()};
}

LdcStatistics ldc_statistics(const at::Tensor& probabilities, const at::Tensor& target,
                             const at::Tensor& confidence) {
  CMAF_CHECK_EQ(probabilities.dim(), 4, "probabilities must be [B, K, H, W]");
  CMAF_CHECK(probabilities.sizes() == target.sizes(), "target ", target.sizes(),
             " vs probabilities ", probabilities.sizes());
  CMAF_CHECK(confidence.dim() == 3 && confidence.size(0) == probabilities.size(0) &&
                 confidence.size(1) == probabilities.size(2) && confidence.size(2) == probabilities.size(3),
             "confidence must be [B, H, W], got ", confidence.sizes());
  const at::Tensor p = widened(probabilities).slice(1, 1);  // foreground classes
  const at::Tensor q = widened(target).slice(1, 1).to(p.dtype());
  const at::Tensor m = widened(confidence).unsqueeze(1).to(p.dtype());
  const std::vector<int64_t> dims{0, 2, 3};
  return {(m * p * q).sum(dims), (m * p).sum(dims), (m * q).sum(dims)};
}

LdcStatistics with_global(const LdcStatistics& local, const LdcStatistics& global) {
  // The value must be global's bits on every rank: the constraints feed the multipliers, which
  // must stay bit-identical. local + (global - local).detach() rounds twice (its value differs
  // from global in the last bit whenever global - local is inexact, as with several ranks);
  // local - local.detach() is exactly 0, so global + it is exactly global.
  auto merge = [](const at::Tensor& l, const at::Tensor& g) { return g.to(l.dtype()).detach() + (l - l.detach()); };
  return {merge(local.intersection, global.intersection), merge(local.prediction, global.prediction),
          merge(local.target, global.target)};
}

at::Tensor ldc_constraints(const LdcStatistics& s) {
  const at::Tensor c = 1.0 - (2.0 * s.intersection + kDiceSmooth) / (s.prediction + s.target + kDiceSmooth);
  // A class the targets do not hold anywhere in the (global) batch has no constraint: with Q = 0
  // the Dice is ~0 as soon as the student gives the class any mass, so C would sit at 1, the
  // multiplier at its maximum, and the student would be pushed to predict background everywhere.
  return at::where(s.target.detach() > 0, c, at::zeros_like(c));
}

at::Tensor lagrangian_term(const at::Tensor& constraints, const std::vector<double>& multipliers,
                           const std::vector<double>& tolerances) {
  CMAF_CHECK_EQ(constraints.numel(), static_cast<int64_t>(multipliers.size()), "one multiplier per constraint");
  CMAF_CHECK_EQ(multipliers.size(), tolerances.size(), "one tolerance per constraint");
  const auto options = constraints.options();
  const at::Tensor lambda = at::tensor(multipliers, at::kDouble).to(options);
  const at::Tensor eps = at::tensor(tolerances, at::kDouble).to(options);
  return (lambda * (constraints - eps)).sum();
}

at::Tensor released_prior_constraint(const at::Tensor& logits, const at::Tensor& one_hot) {
  return at::sigmoid(widened(logits)).mean() - one_hot.to(widened(logits).dtype()).mean();
}

}  // namespace cmaf::losses
