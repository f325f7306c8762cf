// A cross-rank sum that autograd can differentiate: forward sums over ranks, backward sums the
// incoming gradient over ranks (the gradient of a sum of the ranks' losses). Used for
// synchronised batch norm: model::set_statistics_reducer(model, statistics_reducer(world)).
// Every rank must call it in the same order, forward and backward (it is a collective).
#pragma once

#include <ATen/ATen.h>

#include <functional>

#include "cluster/communicator.h"

namespace cmaf::cluster {

at::Tensor all_reduce_sum_differentiable(const at::Tensor& x, Communicator& communicator);

// The reducer the model's BatchNorm2d accepts (a std::function; model/ knows no communicator).
std::function<at::Tensor(const at::Tensor&)> statistics_reducer(Communicator& communicator);

}  // namespace cmaf::cluster
