#include "cluster/communicator.h"

#include <vector>

#include "common/error.h"

namespace cmaf::cluster {

namespace {
thread_local double waited_seconds = 0.0;  // collective_wait_seconds()
}  // namespace

void Work::wait() const {
  if (!completed()) {
    const auto start = std::chrono::steady_clock::now();
    done_.wait();
    waited_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  done_.get();
}

double collective_wait_seconds() { return waited_seconds; }

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

namespace {
// all_gather's output shape: [size, *tensor.sizes()].
std::vector<int64_t> gathered_shape(const Communicator& communicator, const at::Tensor& tensor) {
  std::vector<int64_t> shape{communicator.size()};
  shape.insert(shape.end(), tensor.sizes().begin(), tensor.sizes().end());
  return shape;
}
}  // namespace

void check_gather_output(const Communicator& communicator, const at::Tensor& tensor, const at::Tensor& output) {
  const std::vector<int64_t> shape = gathered_shape(communicator, tensor);
  if (!output.defined() || output.sizes() != at::IntArrayRef(shape) || !output.is_contiguous() ||
      output.scalar_type() != tensor.scalar_type() || output.device() != tensor.device()) {
    throw InternalError(str("communicator ", communicator.name(), ": all_gather of a ", at::toString(tensor.scalar_type()),
                            " tensor of sizes ", tensor.sizes(), " on ", tensor.device().str(),
                            " needs a contiguous output of sizes ", at::IntArrayRef(shape), " of that dtype and device, got ",
                            output.defined() ? str(at::toString(output.scalar_type()), " sizes ", output.sizes(),
                                                   output.is_contiguous() ? "" : " (not contiguous)", " on ",
                                                   output.device().str())
                                             : std::string("an undefined tensor")));
  }
}

at::Tensor Communicator::all_gather(const at::Tensor& tensor) {
  check_collective_tensor(*this, tensor, "all_gather");
  at::Tensor output =
      at::empty(gathered_shape(*this, tensor), tensor.options().memory_format(at::MemoryFormat::Contiguous));
  all_gather_async(tensor, output)->wait();
  return output;
}

}  // namespace cmaf::cluster
