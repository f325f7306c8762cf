// The loss of one micro-batch exactly as `cmaformer train` computes it (METHOD.md section 2):
// supervised loss on the labeled slices; LDC on the confident pixels of the unlabeled slices
// with per-organ statistics summed over all ranks (a collective: every rank calls it at every
// step); boundary contrastive on the decoder features of both; ramp-up of the unlabeled terms.
// Separate from the trainer so that the same code can be run on 1 rank and on N ranks holding
// the parts of one global batch (tests/core/step_loss_test.cpp).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "cluster/communicator.h"
#include "core/batch_tensors.h"
#include "losses/boundary_contrastive.h"
#include "losses/lagrange_multipliers.h"
#include "losses/supervised_loss.h"
#include "model/cmaformer.h"

namespace cmaf::core {

// Targets for the unlabeled slices: class ids and a 0/1 (float) mask of the pixels that count.
struct UnlabeledTargets {
  torch::Tensor labels;      // [Bu, H, W] int64
  torch::Tensor confidence;  // [Bu, H, W] float
};

// The EMA teacher's argmax on the weak view and its softmax confidence >= threshold (no grad).
UnlabeledTargets teacher_targets(model::CmaformerImpl& teacher, const torch::Tensor& weak, double threshold,
                                 bool bf16);

struct StepLossOptions {
  int64_t classes = 0;
  bool ldc = false;               // the LDC term (an unlabeled stream exists somewhere and --ldc)
  double ldc_fixed_weight = 0.0;  // > 0: w * sum_c C_c instead of the multipliers
  double contrastive_weight = 0.0;
  double ramp = 1.0;  // sigmoid ramp-up factor of the unlabeled terms at this step
  bool bf16 = false;
  // Strong views through the student in a forward of their own, batch norm running statistics
  // frozen for it (TrainConfig::separate_strong_forward). Every rank must then hold strong views
  // (the trainer's shard plan guarantees it): with synchronised batch norm each forward is a collective.
  bool separate_strong_forward = false;
  uint64_t contrastive_seed = 0;  // anchor sampling; vary per step, rank and micro-batch
};

struct StepLoss {
  // What backward runs on. The reducer averages gradients over ranks while the LDC term's
  // gradient is already that of the global constraint split over ranks (losses::with_global),
  // so the LDC term enters multiplied by the world size.
  torch::Tensor objective;
  torch::Tensor total;  // the loss as reported: supervised + ramp * (ldc + w * contrastive)
  losses::SupervisedLoss supervised;
  torch::Tensor ldc;
  torch::Tensor contrastive;
  std::vector<double> constraints;  // C_c per organ (0 when the targets hold none), empty without LDC
  // Per organ: the targets hold it somewhere in the global batch (otherwise C_c is 0 by
  // definition and reported as null: there was nothing to be consistent with).
  std::vector<uint8_t> constraint_active;
};

// `head` may be null (contrastive weight 0). `targets` is ignored when t.strong is empty.
StepLoss step_loss(model::CmaformerImpl& student, losses::ProjectionHeadImpl* head, const StepTensors& t,
                   const UnlabeledTargets& targets, const losses::LagrangeMultipliers& multipliers,
                   const StepLossOptions& options, cluster::Communicator& world);

}  // namespace cmaf::core
