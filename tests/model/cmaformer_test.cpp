#include "model/cmaformer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/error.h"
#include "model/cpu_autocast.h"
#include "tests/model/param_formulas.h"

namespace cmaf::model {
namespace {

Cmaformer tiny_model(uint64_t seed = 0) {
  torch::manual_seed(seed);
  return Cmaformer(preset_config("tiny"));
}

// Two input sizes (one not square, so a swapped H/W shows) and two batch sizes.
TEST(Cmaformer, OutputShapeAtTwoSizesAndTwoBatchSizes) {
  Cmaformer model = tiny_model();
  model->eval();
  torch::NoGradGuard no_grad;
  for (const auto& [batch, h, w] : {std::tuple<int64_t, int64_t, int64_t>{1, 64, 64}, {3, 96, 160}}) {
    const CmaformerOutput out = model->forward_features(torch::randn({batch, 1, h, w}));
    EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{batch, 9, h, w}));
    EXPECT_EQ(out.decoder_features.sizes(), (std::vector<int64_t>{batch, 8, h, w}));  // F1 of tiny
  }
}

TEST(Cmaformer, QuarterPresetAt224) {
  torch::manual_seed(0);
  Cmaformer model(preset_config("quarter"));
  model->eval();
  torch::NoGradGuard no_grad;
  EXPECT_EQ(model->forward(torch::randn({2, 1, 224, 224})).sizes(), (std::vector<int64_t>{2, 9, 224, 224}));
}

TEST(Cmaformer, InputSizeNotDivisibleBy32IsAClearError) {
  Cmaformer model = tiny_model();
  try {
    model->forward(torch::randn({1, 1, 100, 64}));
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("100 x 64"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("multiples of 32"), std::string::npos) << e.what();
  }
  EXPECT_THROW(model->forward(torch::randn({1, 3, 64, 64})), InputError);  // wrong channels
}

TEST(Cmaformer, SamplesOfABatchDoNotInfluenceEachOther) {
  Cmaformer model = tiny_model();
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor a = torch::randn({2, 1, 64, 64});
  torch::Tensor b = a.clone();
  b[1] = torch::randn({1, 64, 64}) * 3.0;
  const torch::Tensor la = model->forward(a);
  const torch::Tensor lb = model->forward(b);
  EXPECT_TRUE(torch::allclose(la[0], lb[0], 1e-5, 1e-6)) << (la[0] - lb[0]).abs().max().item<float>();
  EXPECT_GT((la[1] - lb[1]).abs().max().item<float>(), 1e-3);  // sample 1 did change
}

TEST(Cmaformer, EveryParameterGetsAFiniteNonZeroGradient) {
  Cmaformer model = tiny_model();
  model->train();
  const torch::Tensor x = torch::randn({2, 1, 64, 64});
  const torch::Tensor target = torch::randint(0, 9, {2, 64, 64});
  torch::nn::functional::cross_entropy(model->forward(x), target).backward();
  int checked = 0;
  for (const auto& p : model->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key() << " received no gradient";
    const double norm = p.value().grad().norm().item<double>();
    EXPECT_TRUE(std::isfinite(norm)) << p.key();
    EXPECT_GT(norm, 0.0) << p.key();
    ++checked;
  }
  EXPECT_GT(checked, 100);
}

TEST(Cmaformer, SameSeedSameThreadsSameLogitsBitForBit) {
  const torch::Tensor x = torch::randn({2, 1, 64, 64});
  Cmaformer a = tiny_model(7);
  Cmaformer b = tiny_model(7);
  a->eval();
  b->eval();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(a->forward(x), b->forward(x)));
  EXPECT_FALSE(torch::equal(a->forward(x), tiny_model(8)->forward(x)));
}

TEST(Cmaformer, ParameterCountOfEveryPresetMatchesTheLayerFormulas) {
  for (const std::string& name : preset_names()) {
    const CmaformerConfig config = preset_config(name);
    Cmaformer model(config);
    int64_t registered = 0;
    for (const auto& p : model->parameters()) registered += p.numel();
    EXPECT_EQ(registered, test::cmaformer_parameters(config)) << name;
  }
  // METHOD.md: about 47.7 M for the paper setting without the released code's unused modules.
  EXPECT_NEAR(static_cast<double>(test::cmaformer_parameters(preset_config("paper"))), 47.7e6, 0.05e6);
}

TEST(Cmaformer, Bf16AutocastRunsForwardAndBackwardCloseToFp32) {
  Cmaformer model = tiny_model(3);
  const torch::Tensor x = torch::randn({2, 1, 64, 64});
  model->eval();  // same normalisation statistics in both runs
  const torch::Tensor reference = model->forward(x).detach();
  torch::Tensor mixed;
  {
    CpuAutocast autocast;
    mixed = model->forward(x);
    EXPECT_EQ(mixed.scalar_type(), at::kBFloat16);
    mixed.to(torch::kFloat).square().mean().backward();
  }
  for (const auto& p : model->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
  }
  // Stated tolerance: bf16 keeps 8 bits of mantissa; through ~40 layers the logits stay within
  // 5 % of their range.
  const double range = reference.abs().max().item<double>();
  const double error = (mixed.to(torch::kFloat) - reference).abs().max().item<double>();
  EXPECT_LT(error, 0.05 * range) << "max |bf16 - fp32| " << error << " vs range " << range;
  std::cout << "bf16 autocast vs fp32 logits: max |diff| " << error << ", logit range " << range << "\n";
}

TEST(Cmaformer, ProbabilitiesFollowTheOutputMode) {
  CmaformerConfig config = preset_config("tiny");
  const torch::Tensor logits = torch::randn({1, 9, 4, 4});
  EXPECT_TRUE(torch::allclose(Cmaformer(config)->probabilities(logits).sum(1), torch::ones({1, 4, 4})));
  config.output_mode = OutputMode::kSigmoid;
  EXPECT_TRUE(torch::allclose(Cmaformer(config)->probabilities(logits), torch::sigmoid(logits)));
}

}  // namespace
}  // namespace cmaf::model
