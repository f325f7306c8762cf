// Lagrange Duality Consistency constraints (METHOD.md section 2), from additive statistics.
//
// For each foreground class c, over the confident unlabeled pixels of the GLOBAL batch:
//   C_c = 1 - Dice(p_c, q_c) = 1 - (2 I_c + s) / (P_c + Q_c + s)   (0 when Q_c = 0: inactive)
//   I_c = sum m * p_c * q_c,  P_c = sum m * p_c,  Q_c = sum m * q_c   (m = confidence mask)
// I, P and Q are sums, so summing each rank's statistics gives exactly the global ones. This
// file knows nothing of MPI: the caller all-reduces `LdcStatistics::stacked()` and rebuilds.
//
// Gradients: `with_global(local, global)` = global.detach() + (local - local.detach()) has
// exactly the global value (its bits: the constraints, and through them the multipliers, are
// the same on every rank) and the gradient of the local part, so backward through
// C_c(with_global(...)) on every rank gives the gradient of the global constraint (summed over
// ranks by the reducer).
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace cmaf::losses {

struct LdcStatistics {
  at::Tensor intersection;  // [K-1]
  at::Tensor prediction;    // [K-1]
  at::Tensor target;        // [K-1]

  at::Tensor stacked() const;  // [3, K-1], the tensor to all-reduce (sum)
  static LdcStatistics from_stacked(const at::Tensor& stacked);
  LdcStatistics detached() const;
};

// probabilities p [B, K, H, W] (student), target q [B, K, H, W] (one-hot pseudo-labels or
// teacher probabilities), confidence [B, H, W] in [0, 1] (0 = ignore the pixel).
LdcStatistics ldc_statistics(const at::Tensor& probabilities, const at::Tensor& target,
                             const at::Tensor& confidence);

LdcStatistics with_global(const LdcStatistics& local, const LdcStatistics& global);

// C_c for the foreground classes, [K-1], differentiable; 0 (inactive, no gradient) for a class
// with no target mass Q_c in the batch.
at::Tensor ldc_constraints(const LdcStatistics& statistics);

// sum_c lambda_c * (C_c - eps_c): the term added to the loss. lambda and eps are constants.
at::Tensor lagrangian_term(const at::Tensor& constraints, const std::vector<double>& multipliers,
                           const std::vector<double>& tolerances);

// The released code's scalar prior constraint on labeled data: g = mean(sigmoid(logits)) -
// mean(one_hot). An equality constraint; its multiplier is unprojected.
at::Tensor released_prior_constraint(const at::Tensor& logits, const at::Tensor& one_hot);

}  // namespace cmaf::losses
