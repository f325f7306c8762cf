#include "core/step_loss.h"

#include <torch/torch.h>

#include "losses/ldc_statistics.h"
#include "model/batch_norm.h"
#include "model/cpu_autocast.h"

namespace cmaf::core {

UnlabeledTargets teacher_targets(model::CmaformerImpl& teacher, const torch::Tensor& weak, double threshold,
                                 bool bf16) {
  torch::NoGradGuard no_grad;
  model::CpuAutocast autocast(bf16);
  const auto [confidence, argmax] = torch::softmax(teacher.forward(weak).to(torch::kFloat), 1).max(1);
  return {argmax, confidence.ge(threshold).to(torch::kFloat)};
}

StepLoss step_loss(model::CmaformerImpl& student, losses::ProjectionHeadImpl* head, const StepTensors& t,
                   const UnlabeledTargets& targets, const losses::LagrangeMultipliers& multipliers,
                   const StepLossOptions& o, cluster::Communicator& world) {
  const int64_t bl = t.labeled.size(0);
  const int64_t bu = t.strong.defined() ? t.strong.size(0) : 0;
  model::CmaformerOutput out;
  {
    model::CpuAutocast autocast(o.bf16);
    if (o.separate_strong_forward && bu > 0) {
      out = student.forward_features(t.labeled);
      model::CmaformerOutput strong;
      {
        const model::FrozenRunningStatistics frozen(student);
        strong = student.forward_features(t.strong);
      }
      out.logits = torch::cat({out.logits, strong.logits});
      out.decoder_features = torch::cat({out.decoder_features, strong.decoder_features});
    } else {
      out = student.forward_features(bu > 0 ? torch::cat({t.labeled, t.strong}) : t.labeled);
    }
  }
  const torch::Tensor logits = out.logits.to(torch::kFloat);
  StepLoss r;
  r.supervised = losses::supervised_loss(logits.narrow(0, 0, bl), t.label);
  r.ldc = torch::zeros({}, logits.options());
  if (o.ldc) {
    losses::LdcStatistics local;
    if (bu > 0) {
      local = losses::ldc_statistics(torch::softmax(logits.narrow(0, bl, bu), 1),
                                     losses::one_hot_labels(targets.labels, o.classes), targets.confidence);
    } else {  // this rank has no unlabeled slices: it still takes part in the sum
      local = losses::LdcStatistics::from_stacked(torch::zeros({3, o.classes - 1}, logits.device()));
    }
    torch::Tensor global = local.stacked().detach().clone();
    world.all_reduce(global, cluster::ReduceOp::kSum);
    const torch::Tensor c =
        losses::ldc_constraints(losses::with_global(local, losses::LdcStatistics::from_stacked(global)));
    // One host read for both rows: the constraint values and whether the targets held the organ.
    const torch::Tensor host =
        torch::stack({c.detach().to(torch::kDouble), global[2].gt(0).to(torch::kDouble)}).to(torch::kCPU).contiguous();
    const double* row = host.data_ptr<double>();
    const int64_t k = host.size(1);
    r.constraints.assign(row, row + k);
    for (int64_t i = 0; i < k; ++i) r.constraint_active.push_back(row[k + i] > 0.0 ? 1 : 0);
    r.ldc = o.ldc_fixed_weight > 0.0 ? o.ldc_fixed_weight * c.sum()
                                     : losses::lagrangian_term(c, multipliers.values(), multipliers.tolerances());
  }
  r.contrastive = torch::zeros({}, logits.options());
  if (head != nullptr) {
    const torch::Tensor embeddings = head->forward(out.decoder_features.to(torch::kFloat));
    const torch::Tensor labels =
        bu > 0 ? torch::cat({t.label, targets.labels.masked_fill(targets.confidence.eq(0), -1)}) : t.label;
    losses::ContrastiveOptions c;
    c.seed = o.contrastive_seed;
    r.contrastive = losses::boundary_contrastive_loss(embeddings, labels, o.classes, c);
  }
  r.objective = r.supervised.total +
                o.ramp * (static_cast<double>(world.size()) * r.ldc + o.contrastive_weight * r.contrastive);
  r.total = (r.supervised.total + o.ramp * (r.ldc + o.contrastive_weight * r.contrastive)).detach();
  return r;
}

}  // namespace cmaf::core
