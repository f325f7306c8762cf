#include "cluster/communicator.h"

#include "common/error.h"

namespace cmaf::cluster {

std::string to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAvg: return "avg";
    case ReduceOp::kMax: return "max";
  }
  return "?";
}

void check_collective_tensor(const Communicator& communicator, const at::Tensor& tensor,
                             const std::string& operation, ReduceOp op) {
  const auto type = tensor.scalar_type();
  const bool supported = type == at::kFloat || type == at::kDouble || type == at::kBFloat16 ||
                         (type == at::kLong && op != ReduceOp::kAvg);
  if (!supported) {
    throw InternalError(str("communicator ", communicator.name(), " does not support ", operation,
                            (operation == "all_reduce" ? " (" + to_string(op) + ")" : std::string()),
                            " of ", at::toString(type)));
  }
  // Dense memory of numel elements (any dimension order, e.g. channels-last weights): every
  // rank holds the same layout, so the bytes line up.
  if (!tensor.is_non_overlapping_and_dense()) {
    throw InternalError(str("communicator ", communicator.name(), ": ", operation,
                            " needs a dense tensor, got sizes ", tensor.sizes(), " strides ", tensor.strides()));
  }
  // The host backends read the tensor's memory directly: a GPU tensor must go to NCCL.
  if (communicator.name() != "nccl" && !tensor.is_cpu()) {
    throw InternalError(str("communicator ", communicator.name(), ": ", operation, " takes CPU tensors, got one on ",
                            tensor.device().str(), " (GPU tensors go through the NCCL communicator)"));
  }
}

}  // namespace cmaf::cluster
