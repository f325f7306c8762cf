#include "cluster/cluster_error.h"
#include "cluster/gradient_reducer.h"

namespace cmaf::cluster {

ReferenceReducer::ReferenceReducer(std::vector<NamedTensor> parameters, Communicator& communicator)
    : parameters_(std::move(parameters)), communicator_(communicator) {}

void ReferenceReducer::finish() {
  std::string missing;
  for (const NamedTensor& p : parameters_) {
    if (!p.tensor.grad().defined()) missing += (missing.empty() ? "" : ", ") + p.name;
  }
  if (!missing.empty()) {
    throw ClusterError(str("parameters that received no gradient: ", missing,
                           ". Every parameter must contribute to the loss on every rank (a module "
                           "that forward does not call, or a branch skipped on this rank)"));
  }
  // Each rank's share g * float(1 / n), summed: the bucketed reducer's arithmetic, bit for bit.
  const float scale = share_scale(communicator_.size());
  for (const NamedTensor& p : parameters_) {
    if (communicator_.size() > 1) p.tensor.mutable_grad().mul_(scale);
    communicator_.all_reduce(p.tensor.grad(), ReduceOp::kSum);
  }
}

}  // namespace cmaf::cluster
