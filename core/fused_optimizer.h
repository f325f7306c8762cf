// AdamW and SGD whose step makes one pass over each parameter's memory.
//
// LibTorch's AdamW step runs nine tensor operations per parameter (decay, two for each moment,
// sqrt, divide, add, addcdiv), each a pass over memory, one allocating: on the half preset's
// 12 M parameters it moves about 1 GB a step. The fused step reads p, grad, exp_avg and
// exp_avg_sq once and writes p, exp_avg and exp_avg_sq once (336 MB), in one loop per
// parameter, split over LibTorch's threads. SGD (momentum, Nesterov) likewise. The state is
// LibTorch's own (AdamWParamState, SGDParamState, same keys), so checkpoints written with either
// load into the other, and every other Optimizer member (param_groups, set_lr, save/load) is
// the base class's.
//
// The formula is LibTorch's, operation by operation, in float32:
//   AdamW: p = p * (1 - lr wd);  m = m b1 + (1 - b1) g;  v = v b2 + ((1 - b2) g) g;
//          p = p + ((-lr / bc1) m) / (sqrt(v) / sqrt(bc2) + eps)
//   SGD:   d = g + wd p (g if wd = 0);  buf = d (first step) or buf mu + (1 - dampening) d;
//          d = d + mu buf (Nesterov) or buf;  p = p + (-lr) d
// each operation rounded once (no fused multiply-add: the vector and scalar code of the loop give
// the same bits, so ranks on CPUs with and without AVX2 stay identical). LibTorch's own kernels
// fuse some of them on AVX2 (a + alpha b as one FMA) and not in their scalar tails, so the two
// optimizers agree to about an ulp per step, not bit for bit.
//
// The fused loop needs float32 tensors that are dense and share one layout (strides) with their
// gradient; any other parameter (a float64 one, a gradient in another layout, amsgrad) takes
// LibTorch's operations, with the same result as torch::optim::AdamW / SGD.
#pragma once

#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <cstdint>

namespace cmaf::core {

class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  torch::Tensor step(LossClosure closure = nullptr) override;
  // How many parameters the last step updated in the one-pass loop (the rest: LibTorch's).
  int64_t last_step_fused() const { return last_step_fused_; }

 private:
  int64_t last_step_fused_ = 0;
};

class FusedSgd : public torch::optim::SGD {
 public:
  using torch::optim::SGD::SGD;
  torch::Tensor step(LossClosure closure = nullptr) override;
  int64_t last_step_fused() const { return last_step_fused_; }

 private:
  int64_t last_step_fused_ = 0;
};

}  // namespace cmaf::core
