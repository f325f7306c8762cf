#include "core/fused_optimizer.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include <cmath>
#include <sstream>
#include <string>
#include <type_traits>

#include "core/optimizer_kernels.h"

namespace cmaf::core {
namespace {

// Elements per task of the parallel loop: a few hundred kilobytes a tensor, so that small
// parameters (biases, norms) stay on the calling thread.
constexpr int64_t kGrain = int64_t{1} << 16;

// The optimizer state's key for `p`: a string in LibTorch 1.x (the TensorImpl's address as
// c10::guts::to_string prints it), the address itself in 2.x.
template <typename Key>
Key state_key(const at::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream text;
    text << p.unsafeGetTensorImpl();
    return text.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

template <typename Map>
typename Map::mapped_type::element_type* find_state(Map& state, const at::Tensor& p) {
  const auto found = state.find(state_key<typename Map::key_type>(p));
  return found == state.end() ? nullptr : found->second.get();
}

template <typename Map>
void put_state(Map& state, const at::Tensor& p, typename Map::mapped_type value) {
  state[state_key<typename Map::key_type>(p)] = std::move(value);
}

// Whether element i of `a`'s memory is element i of `b`'s: the same sizes, and the same strides
// wherever a size is above 1 (a size-1 dimension's stride is arbitrary: autograd gives a
// depthwise weight [C, 1, 3, 3] of strides [9, 9, 3, 1] the gradient strides [9, 1, 3, 1]).
bool same_layout(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes()) return false;
  for (int64_t d = 0; d < a.dim(); ++d) {
    if (a.size(d) > 1 && a.stride(d) != b.stride(d)) return false;
  }
  return true;
}

// Whether the fused loop may walk these tensors as one flat float32 array each: on the CPU,
// dense, and all in one layout.
bool fusable(const at::Tensor& p, std::initializer_list<const at::Tensor*> others) {
  const auto flat_float = [](const at::Tensor& t) {
    return t.layout() == at::kStrided && t.is_cpu() && t.scalar_type() == at::kFloat && t.is_non_overlapping_and_dense();
  };
  if (!flat_float(p)) return false;
  for (const at::Tensor* t : others) {
    if (!flat_float(*t) || !same_layout(p, *t)) return false;
  }
  return true;
}

template <typename Loop>
void parallel_over(int64_t count, const Loop& loop) {
  at::parallel_for(0, count, kGrain, [&](int64_t begin, int64_t end) { loop(begin, end - begin); });
}

torch::Tensor run_closure(const torch::optim::Optimizer::LossClosure& closure) {
  if (closure == nullptr) return {};
  at::AutoGradMode enable_grad(true);
  return closure();
}

}  // namespace

torch::Tensor FusedAdamW::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss = run_closure(closure);
  last_step_fused_ = 0;
  for (auto& group : param_groups_) {
    const auto& options = static_cast<const torch::optim::AdamWOptions&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const torch::Tensor& grad = p.grad();
      TORCH_CHECK(!grad.is_sparse(), "AdamW does not support sparse gradients");
      auto* state = static_cast<torch::optim::AdamWParamState*>(find_state(state_, p));
      if (state == nullptr) {
        auto fresh = std::make_unique<torch::optim::AdamWParamState>();
        fresh->step(0);
        fresh->exp_avg(torch::zeros_like(p, at::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
        if (options.amsgrad()) fresh->max_exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
        state = fresh.get();
        put_state(state_, p, std::move(fresh));
      }
      state->step(state->step() + 1);
      const double beta1 = std::get<0>(options.betas());
      const double beta2 = std::get<1>(options.betas());
      const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(state->step()));
      const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(state->step()));
      const double step_size = options.lr() / bias_correction1;
      torch::Tensor& exp_avg = state->exp_avg();
      torch::Tensor& exp_avg_sq = state->exp_avg_sq();
      if (!options.amsgrad() && fusable(p, {&grad, &exp_avg, &exp_avg_sq})) {
        AdamWCoefficients c;
        // Each coefficient is what LibTorch's scalar argument becomes for a float tensor.
        c.decay = static_cast<float>(1 - options.lr() * options.weight_decay());
        c.beta1 = static_cast<float>(beta1);
        c.one_minus_beta1 = static_cast<float>(1 - beta1);
        c.beta2 = static_cast<float>(beta2);
        c.one_minus_beta2 = static_cast<float>(1 - beta2);
        c.sqrt_bias_correction2 = static_cast<float>(std::sqrt(bias_correction2));
        c.eps = static_cast<float>(options.eps());
        c.neg_step_size = static_cast<float>(-step_size);
        float* param = p.data_ptr<float>();
        const float* g = grad.data_ptr<float>();
        float* m = exp_avg.data_ptr<float>();
        float* v = exp_avg_sq.data_ptr<float>();
        parallel_over(p.numel(), [&](int64_t begin, int64_t n) {
          adamw_update(param + begin, g + begin, m + begin, v + begin, n, c);
        });
        torch::autograd::impl::bump_version(p);  // as an in-place operation would
        ++last_step_fused_;
        continue;
      }
      // LibTorch's AdamW, operation by operation.
      if (options.weight_decay() != 0) p.mul_(1 - options.lr() * options.weight_decay());
      exp_avg.mul_(beta1).add_(grad, 1 - beta1);
      exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
      torch::Tensor denom;
      if (options.amsgrad()) {
        torch::Tensor& max_exp_avg_sq = state->max_exp_avg_sq();
        torch::max_out(max_exp_avg_sq, exp_avg_sq, max_exp_avg_sq);
        denom = (max_exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(options.eps());
      } else {
        denom = (exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(options.eps());
      }
      p.addcdiv_(exp_avg, denom, -step_size);
    }
  }
  return loss;
}

torch::Tensor FusedSgd::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss = run_closure(closure);
  last_step_fused_ = 0;
  for (auto& group : param_groups_) {
    const auto& options = static_cast<const torch::optim::SGDOptions&>(group.options());
    const double momentum = options.momentum();
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const torch::Tensor& grad = p.grad();
      auto* state = momentum != 0 ? static_cast<torch::optim::SGDParamState*>(find_state(state_, p)) : nullptr;
      const bool first = momentum != 0 && state == nullptr;
      const torch::Tensor buffer = first || momentum == 0 ? torch::Tensor() : state->momentum_buffer();
      TORCH_CHECK(momentum == 0 || first || buffer.defined(), "SGD state without a momentum buffer");
      if (fusable(p, {&grad}) && (!buffer.defined() || fusable(p, {&buffer}))) {
        torch::Tensor fresh_buffer;
        if (first) fresh_buffer = torch::empty_like(p, at::MemoryFormat::Preserve);
        SgdCoefficients c;
        c.weight_decay = static_cast<float>(options.weight_decay());
        c.momentum = static_cast<float>(momentum);
        c.one_minus_dampening = static_cast<float>(1 - options.dampening());
        c.nesterov = options.nesterov();
        c.first = first;
        c.neg_lr = static_cast<float>(-1 * options.lr());
        float* param = p.data_ptr<float>();
        const float* g = grad.data_ptr<float>();
        float* b = first ? fresh_buffer.data_ptr<float>() : buffer.defined() ? buffer.data_ptr<float>() : nullptr;
        parallel_over(p.numel(), [&](int64_t begin, int64_t n) {
          sgd_update(param + begin, g + begin, b == nullptr ? nullptr : b + begin, n, c);
        });
        torch::autograd::impl::bump_version(p);
        if (first) {
          auto created = std::make_unique<torch::optim::SGDParamState>();
          created->momentum_buffer(fresh_buffer);
          put_state(state_, p, std::move(created));
        }
        ++last_step_fused_;
        continue;
      }
      // LibTorch's SGD, operation by operation.
      torch::Tensor d_p = grad;
      if (options.weight_decay() != 0) d_p = d_p.add(p, options.weight_decay());
      if (momentum != 0) {
        torch::Tensor buf;
        if (first) {
          buf = torch::clone(d_p).detach();
          auto created = std::make_unique<torch::optim::SGDParamState>();
          created->momentum_buffer(buf);
          put_state(state_, p, std::move(created));
        } else {
          buf = buffer;
          buf.mul_(momentum).add_(d_p, 1 - options.dampening());
        }
        d_p = options.nesterov() ? d_p.add(buf, momentum) : buf;
      }
      p.add_(d_p, -1 * options.lr());
    }
  }
  return loss;
}

}  // namespace cmaf::core
