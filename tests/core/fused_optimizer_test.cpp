// The trainer's one-pass optimizers (core/fused_optimizer.h) against LibTorch's AdamW and SGD:
// the same updates within float rounding, LibTorch's exact bits where they take LibTorch's
// operations, state that moves between the two through a checkpoint, and loops whose vector code
// gives the scalar formula's bits at every length and alignment and for any thread count.
#include "core/fused_optimizer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <vector>

#include "core/optimizer_kernels.h"

namespace cmaf::core {
namespace {

// Rounds to float and keeps the compiler from fusing it into a multiply-add with what follows:
// the reference below rounds every operation once, as the loops must.
float rounded(float x) {
  volatile float stored = x;
  return stored;
}

std::vector<float> random_floats(int64_t n, uint64_t seed, float low, float high) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  const torch::Tensor t = torch::rand({n}, g) * (high - low) + low;
  return std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + n);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(OptimizerKernels, AdamWLoopGivesTheScalarFormulasBitsAtEveryLengthAndAlignment) {
  AdamWCoefficients c;
  c.decay = 1.0f - 1e-2f * 0.05f;
  c.sqrt_bias_correction2 = std::sqrt(1.0f - 0.999f * 0.999f);
  c.neg_step_size = -1e-2f / (1.0f - 0.9f * 0.9f);
  const int64_t total = 1 << 12;
  for (int64_t start : {0, 1, 3, 7}) {
    for (int64_t n : {int64_t{1}, int64_t{5}, int64_t{8}, int64_t{31}, int64_t{64}, total - 7}) {
      std::vector<float> p = random_floats(total, 1, -2, 2), g = random_floats(total, 2, -1, 1);
      std::vector<float> m = random_floats(total, 3, -0.1f, 0.1f), v = random_floats(total, 4, 0, 0.01f);
      std::vector<float> ep = p, em = m, ev = v;
      for (int64_t i = start; i < start + n; ++i) {
        const float decayed = rounded(p[i] * c.decay);
        em[i] = rounded(rounded(m[i] * c.beta1) + rounded(c.one_minus_beta1 * g[i]));
        ev[i] = rounded(rounded(v[i] * c.beta2) + rounded(rounded(c.one_minus_beta2 * g[i]) * g[i]));
        const float denom = rounded(rounded(std::sqrt(ev[i]) / c.sqrt_bias_correction2) + c.eps);
        ep[i] = rounded(decayed + rounded(rounded(c.neg_step_size * em[i]) / denom));
      }
      adamw_update(p.data() + start, g.data() + start, m.data() + start, v.data() + start, n, c);
      EXPECT_TRUE(same_bits(p, ep) && same_bits(m, em) && same_bits(v, ev)) << "start " << start << ", n " << n;
    }
  }
}

TEST(OptimizerKernels, SgdLoopGivesTheScalarFormulasBits) {
  const int64_t n = 1003;
  for (const bool nesterov : {true, false}) {
    for (const bool first : {true, false}) {
      SgdCoefficients c;
      c.weight_decay = 1e-3f;
      c.momentum = 0.9f;
      c.one_minus_dampening = nesterov ? 1.0f : 0.75f;
      c.nesterov = nesterov;
      c.first = first;
      c.neg_lr = -0.05f;
      std::vector<float> p = random_floats(n, 5, -2, 2), g = random_floats(n, 6, -1, 1);
      std::vector<float> b = random_floats(n, 7, -0.5f, 0.5f);
      std::vector<float> ep = p, eb = b;
      for (int64_t i = 0; i < n; ++i) {
        const float d = rounded(g[i] + rounded(c.weight_decay * p[i]));
        eb[i] = first ? d : rounded(rounded(b[i] * c.momentum) + rounded(c.one_minus_dampening * d));
        const float step = nesterov ? rounded(d + rounded(c.momentum * eb[i])) : eb[i];
        ep[i] = rounded(p[i] + rounded(c.neg_lr * step));
      }
      sgd_update(p.data(), g.data(), b.data(), n, c);
      EXPECT_TRUE(same_bits(p, ep) && same_bits(b, eb)) << "nesterov " << nesterov << ", first " << first;
    }
  }
}

// Parameters of the shapes and layouts the trainer has, and ones the fused loop must leave to
// LibTorch's operations.
struct Parameters {
  std::vector<torch::Tensor> fused;    // float32, dense, the gradient in the parameter's layout
  std::vector<torch::Tensor> unfused;  // float64; a gradient in another layout
  torch::Tensor unused;                // never gets a gradient

  std::vector<torch::Tensor> all() const {
    std::vector<torch::Tensor> a = fused;
    a.insert(a.end(), unfused.begin(), unfused.end());
    a.push_back(unused);
    return a;
  }
};

Parameters make_parameters(uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  Parameters p;
  p.fused.push_back(torch::randn({16, 8, 3, 3}, g).contiguous(at::MemoryFormat::ChannelsLast));
  p.fused.push_back(torch::randn({16}, g));
  p.fused.push_back(torch::randn({33, 17}, g));
  p.fused.push_back(torch::randn({6, 1, 3, 3}, g));  // depthwise: its gradient's strides differ at the 1
  p.unfused.push_back(torch::randn({9, 5}, g, torch::kDouble));
  p.unfused.push_back(torch::randn({8, 4, 3, 3}, g));  // its gradient comes channels-last
  p.unused = torch::randn({7}, g);
  for (torch::Tensor& t : p.fused) t.set_requires_grad(true);
  for (torch::Tensor& t : p.unfused) t.set_requires_grad(true);
  p.unused.set_requires_grad(true);
  return p;
}

// How the gradients are made: their scale, and whether the fused parameters' gradients are views
// at offsets into one flat buffer, as the bucketed reducer leaves them.
struct GradientStyle {
  double scale = 1.0;
  bool in_one_buffer = false;
};

// The same seeded gradient for step `step` on both sets.
void set_gradients(Parameters& p, int step, GradientStyle style = {}) {
  at::Generator g = at::detail::createCPUGenerator(100 + step);
  for (torch::Tensor& t : p.fused) {
    t.mutable_grad() = (torch::randn(t.sizes(), g) * style.scale).contiguous(t.suggest_memory_format());
  }
  torch::Tensor& depthwise = p.fused[3].mutable_grad();
  depthwise = depthwise.as_strided(depthwise.sizes(), {9, 1, 3, 1});  // as autograd makes it
  if (style.in_one_buffer) {
    int64_t total = 3;  // the first gradient starts 3 elements in: nothing is aligned
    for (const torch::Tensor& t : p.fused) total += t.numel();
    const torch::Tensor flat = torch::full({total}, std::nan(""));
    int64_t offset = 3;
    for (torch::Tensor& t : p.fused) {
      torch::Tensor view = torch::empty({0}).set_(flat.storage(), offset, t.sizes(), t.grad().strides());
      view.copy_(t.grad());
      t.mutable_grad() = view;
      offset += t.numel();
    }
  }
  p.unfused[0].mutable_grad() = torch::randn(p.unfused[0].sizes(), g, torch::kDouble) * style.scale;
  p.unfused[1].mutable_grad() =
      (torch::randn(p.unfused[1].sizes(), g) * style.scale).contiguous(at::MemoryFormat::ChannelsLast);
}

// The largest difference relative to the tensor's scale.
double relative_gap(const torch::Tensor& a, const torch::Tensor& b) {
  const double scale = std::max(1e-30, b.abs().max().item<double>());
  return (a - b).abs().max().item<double>() / scale;
}

template <typename Fused, typename Reference, typename Options>
void expect_same_updates(const Options& options, int steps, GradientStyle style = {}) {
  Parameters mine = make_parameters(9), theirs = make_parameters(9);
  Fused fused(mine.all(), options);
  Reference reference(theirs.all(), options);
  for (int step = 0; step < steps; ++step) {
    set_gradients(mine, step, style);
    set_gradients(theirs, step, GradientStyle{style.scale, false});  // LibTorch's: plain tensors
    fused.step();
    reference.step();
    EXPECT_EQ(fused.last_step_fused(), static_cast<int64_t>(mine.fused.size()));
    for (size_t k = 0; k < mine.fused.size(); ++k) {
      // About an ulp a step (LibTorch fuses one multiply-add that the fused loop rounds twice).
      EXPECT_LT(relative_gap(mine.fused[k], theirs.fused[k]), 1e-6) << "parameter " << k << ", step " << step;
      EXPECT_TRUE(mine.fused[k].is_contiguous(mine.fused[k].suggest_memory_format()));
    }
    for (size_t k = 0; k < mine.unfused.size(); ++k) {
      EXPECT_TRUE(torch::equal(mine.unfused[k], theirs.unfused[k])) << "parameter " << k << ", step " << step;
    }
    EXPECT_TRUE(torch::equal(mine.unused, theirs.unused));
  }
}

TEST(FusedAdamW, MatchesLibTorchAdamW) {
  using torch::optim::AdamWOptions;
  expect_same_updates<FusedAdamW, torch::optim::AdamW>(AdamWOptions(1e-2).weight_decay(0.05), 6);
  expect_same_updates<FusedAdamW, torch::optim::AdamW>(AdamWOptions(3e-3).weight_decay(0), 3);
  // Other betas and an eps that matters (gradients of 1e-4 against eps 1e-3), gradients in one
  // buffer at unaligned offsets.
  GradientStyle small;
  small.scale = 1e-4;
  small.in_one_buffer = true;
  expect_same_updates<FusedAdamW, torch::optim::AdamW>(
      AdamWOptions(1e-2).betas({0.8, 0.95}).eps(1e-3).weight_decay(0.1), 5, small);
}

TEST(FusedAdamW, AmsgradTakesLibTorchsOperations) {
  Parameters mine = make_parameters(9), theirs = make_parameters(9);
  const auto options = torch::optim::AdamWOptions(1e-2).amsgrad(true);
  FusedAdamW fused(mine.all(), options);
  torch::optim::AdamW reference(theirs.all(), options);
  for (int step = 0; step < 3; ++step) {
    set_gradients(mine, step);
    set_gradients(theirs, step);
    fused.step();
    reference.step();
    EXPECT_EQ(fused.last_step_fused(), 0);
  }
  for (size_t k = 0; k < mine.fused.size(); ++k) EXPECT_TRUE(torch::equal(mine.fused[k], theirs.fused[k])) << k;
}

TEST(FusedSgd, MatchesLibTorchSgd) {
  using torch::optim::SGDOptions;
  GradientStyle in_one_buffer;
  in_one_buffer.in_one_buffer = true;
  expect_same_updates<FusedSgd, torch::optim::SGD>(SGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(1e-3), 5);
  expect_same_updates<FusedSgd, torch::optim::SGD>(SGDOptions(0.05).momentum(0.8).dampening(0.25), 4, in_one_buffer);
  expect_same_updates<FusedSgd, torch::optim::SGD>(SGDOptions(0.05).weight_decay(1e-2), 3);
}

// Runs `before` steps of each optimizer, swaps their states through checkpoints (each continues
// from the other's), then one more step of each: the same updates, every parameter in the
// one-pass loop, and `check(fused)` after it.
template <typename Fused, typename Reference, typename Options, typename Check>
void expect_states_swap(const Options& options, int before, const Check& check) {
  Parameters mine = make_parameters(9), theirs = make_parameters(9);
  Fused fused(mine.all(), options);
  Reference reference(theirs.all(), options);
  for (int step = 0; step <= before; ++step) {
    if (step == before) {
      std::stringstream fused_state, reference_state;
      torch::save(fused, fused_state);
      torch::save(reference, reference_state);
      torch::load(fused, reference_state);
      torch::load(reference, fused_state);
    }
    set_gradients(mine, step);
    set_gradients(theirs, step);
    fused.step();
    reference.step();
  }
  EXPECT_EQ(fused.last_step_fused(), static_cast<int64_t>(mine.fused.size()));
  for (size_t k = 0; k < mine.fused.size(); ++k) EXPECT_LT(relative_gap(mine.fused[k], theirs.fused[k]), 1e-6) << k;
  check(fused);
}

TEST(FusedSgd, MomentumMovesToLibTorchSgdAndBackThroughACheckpoint) {
  // The loaded momentum buffer is used (a fresh one would move the parameters differently).
  expect_states_swap<FusedSgd, torch::optim::SGD>(
      torch::optim::SGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(1e-3), 2, [](const FusedSgd&) {});
}

TEST(FusedAdamW, StateMovesToLibTorchAdamWAndBackThroughACheckpoint) {
  expect_states_swap<FusedAdamW, torch::optim::AdamW>(
      torch::optim::AdamWOptions(1e-2).weight_decay(0.05), 3, [](const FusedAdamW& fused) {
        for (const auto& [key, state] : fused.state()) {
          EXPECT_EQ(static_cast<const torch::optim::AdamWParamState&>(*state).step(), 4) << key;
        }
      });
}

TEST(FusedAdamW, SameBitsOnOneThreadAndOnSeveral) {
  const int threads = at::get_num_threads();
  std::vector<torch::Tensor> results;
  for (const int n : {1, 3}) {
    at::set_num_threads(n);
    at::Generator g = at::detail::createCPUGenerator(21);
    torch::Tensor p = torch::randn({300001}, g).set_requires_grad(true);
    FusedAdamW fused({p}, torch::optim::AdamWOptions(1e-2));
    for (int step = 0; step < 2; ++step) {
      p.mutable_grad() = torch::randn({300001}, g);
      fused.step();
    }
    results.push_back(p.detach().clone());
  }
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(results[0], results[1]));
}

TEST(FusedAdamW, RunsTheClosureWithGradientsOnAndReturnsItsLoss) {
  torch::Tensor p = torch::ones({4}).set_requires_grad(true);
  FusedAdamW fused({p}, torch::optim::AdamWOptions(0.1));
  const torch::Tensor loss = fused.step([&] {
    p.mutable_grad() = torch::Tensor();
    torch::Tensor l = (p * p).sum();
    l.backward();
    return l;
  });
  EXPECT_FLOAT_EQ(loss.item<float>(), 4.0f);
  EXPECT_LT(p.max().item<float>(), 1.0f);  // moved against the gradient 2p
}

}  // namespace
}  // namespace cmaf::core
