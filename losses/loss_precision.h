// Losses are computed in at least fp32: bf16/fp16 activations (autocast) are widened, fp32 and
// fp64 inputs are kept (fp64 for the finite-difference gradient tests).
#pragma once

#include <ATen/ATen.h>

namespace cmaf::losses {

inline at::Tensor widened(const at::Tensor& x) {
  const auto type = x.scalar_type();
  return (type == at::kBFloat16 || type == at::kHalf) ? x.to(at::kFloat) : x;
}

}  // namespace cmaf::losses
