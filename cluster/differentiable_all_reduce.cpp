#include "cluster/differentiable_all_reduce.h"

#include <torch/csrc/autograd/custom_function.h>

namespace cmaf::cluster {
namespace {

struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static at::Tensor forward(torch::autograd::AutogradContext* context, const at::Tensor& x,
                            Communicator* communicator) {
    context->saved_data["communicator"] = reinterpret_cast<int64_t>(communicator);
    at::Tensor sum = x.detach().contiguous().clone();
    communicator->all_reduce(sum, ReduceOp::kSum);
    return sum;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                 torch::autograd::variable_list gradients) {
    auto* communicator = reinterpret_cast<Communicator*>(context->saved_data["communicator"].toInt());
    at::Tensor sum = gradients[0].contiguous().clone();
    communicator->all_reduce(sum, ReduceOp::kSum);
    return {sum, at::Tensor()};
  }
};

}  // namespace

at::Tensor all_reduce_sum_differentiable(const at::Tensor& x, Communicator& communicator) {
  return AllReduceSum::apply(x, &communicator);
}

std::function<at::Tensor(const at::Tensor&)> statistics_reducer(Communicator& communicator) {
  return [&communicator](const at::Tensor& x) { return all_reduce_sum_differentiable(x, communicator); };
}

}  // namespace cmaf::cluster
