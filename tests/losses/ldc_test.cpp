#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "losses/lagrange_multipliers.h"
#include "losses/ldc_statistics.h"
#include "losses/supervised_loss.h"
#include "tests/losses/finite_difference.h"

namespace cmaf::losses {
namespace {

struct Batch {
  at::Tensor p, q, m;
};

Batch random_batch(int64_t b, uint64_t seed) {
  torch::manual_seed(seed);
  Batch batch;
  batch.p = torch::softmax(torch::randn({b, 4, 6, 6}, torch::kDouble), 1);
  batch.q = one_hot_labels(torch::randint(0, 4, {b, 6, 6}), 4).to(torch::kDouble);
  batch.m = (torch::rand({b, 6, 6}, torch::kDouble) > 0.3).to(torch::kDouble);
  return batch;
}

TEST(LdcStatistics, HalvesSumToTheWholeBatch) {
  const Batch whole = random_batch(4, 1);
  const LdcStatistics all = ldc_statistics(whole.p, whole.q, whole.m);
  const LdcStatistics first = ldc_statistics(whole.p.slice(0, 0, 2), whole.q.slice(0, 0, 2), whole.m.slice(0, 0, 2));
  const LdcStatistics second = ldc_statistics(whole.p.slice(0, 2), whole.q.slice(0, 2), whole.m.slice(0, 2));
  EXPECT_TRUE(torch::allclose(first.stacked() + second.stacked(), all.stacked(), 1e-12, 1e-12));
  // And the constraints from the summed halves equal those of the whole batch.
  EXPECT_TRUE(torch::allclose(ldc_constraints(LdcStatistics::from_stacked(first.stacked() + second.stacked())),
                              ldc_constraints(all), 1e-12, 1e-12));
}

TEST(LdcStatistics, ConstraintIsOneMinusDiceAndZeroConfidenceGivesNoNan) {
  const Batch b = random_batch(2, 2);
  const LdcStatistics s = ldc_statistics(b.p, b.q, b.m);
  const at::Tensor c = ldc_constraints(s);
  EXPECT_EQ(c.numel(), 3);  // foreground classes only
  EXPECT_TRUE((c >= 0).all().item<bool>() && (c <= 1).all().item<bool>());
  const LdcStatistics none = ldc_statistics(b.p, b.q, torch::zeros_like(b.m));
  EXPECT_TRUE(torch::isfinite(ldc_constraints(none)).all().item<bool>());
  EXPECT_NEAR(ldc_constraints(none).abs().max().item<double>(), 0.0, 1e-12);
}

TEST(LdcStatistics, AClassAbsentFromTheTargetsHasNoConstraint) {
  // The student puts mass on class 1 where the confident targets say background only: without
  // the rule, C_1 = 1 - s / (P + s) ~ 1 and the multiplier would push every prediction to background.
  const at::Tensor p = torch::full({1, 2, 4, 4}, 0.5, torch::kDouble).requires_grad_();
  const at::Tensor q = torch::cat({torch::ones({1, 1, 4, 4}, torch::kDouble), torch::zeros({1, 1, 4, 4}, torch::kDouble)}, 1);
  const at::Tensor c = ldc_constraints(ldc_statistics(p, q, torch::ones({1, 4, 4}, torch::kDouble)));
  EXPECT_EQ(c.item<double>(), 0.0);
  c.sum().backward();
  EXPECT_EQ(p.grad().abs().sum().item<double>(), 0.0);
}

TEST(LdcStatistics, GradientMatchesFiniteDifferences) {
  const Batch b = random_batch(1, 3);
  const at::Tensor logits = torch::randn({1, 4, 6, 6}, torch::kDouble);
  test::expect_gradient_matches_finite_differences(
      [&](const at::Tensor& x) {
        const at::Tensor c = ldc_constraints(ldc_statistics(torch::softmax(x, 1), b.q, b.m));
        return lagrangian_term(c, {0.5, 1.0, 2.0}, {0.1, 0.1, 0.1});
      },
      logits);
}

TEST(LdcStatistics, WithGlobalHasTheGlobalValueAndTheLocalGradient) {
  // Two "ranks": the gradient each gets through with_global, summed, equals the gradient of the
  // constraint computed on the whole batch.
  const Batch whole = random_batch(2, 4);
  const at::Tensor logits = torch::randn({2, 4, 6, 6}, torch::kDouble);
  auto total_term = [&](const at::Tensor& c) { return c.sum(); };

  const at::Tensor x = logits.clone().requires_grad_(true);
  total_term(ldc_constraints(ldc_statistics(torch::softmax(x, 1), whole.q, whole.m))).backward();

  at::Tensor summed_grad = torch::zeros_like(logits);
  const LdcStatistics global = ldc_statistics(torch::softmax(logits, 1), whole.q, whole.m).detached();
  for (int64_t rank = 0; rank < 2; ++rank) {
    const at::Tensor xr = logits.slice(0, rank, rank + 1).clone().requires_grad_(true);
    const LdcStatistics local = ldc_statistics(torch::softmax(xr, 1), whole.q.slice(0, rank, rank + 1),
                                               whole.m.slice(0, rank, rank + 1));
    const at::Tensor c = ldc_constraints(with_global(local, global));
    EXPECT_TRUE(torch::allclose(c, ldc_constraints(global), 1e-12, 1e-12));
    total_term(c).backward();
    summed_grad.slice(0, rank, rank + 1).copy_(xr.grad());
  }
  EXPECT_TRUE(torch::allclose(summed_grad, x.grad(), 1e-10, 1e-12));
}

TEST(LdcStatistics, WithGlobalGivesEveryRankTheGlobalBits) {
  // Eight "ranks" in float32, each with an eighth of the global statistics: global - local is
  // inexact, so local + (global - local) would round away from global in the last bit, and
  // differently on each rank (seen: 4 ranks' multipliers drifting apart).
  const int64_t ranks = 8;
  int64_t inexact = 0;  // elements where that formula's value was not global's
  for (uint64_t seed : {11, 12, 13}) {
    torch::manual_seed(seed);
    const at::Tensor p = torch::softmax(torch::randn({ranks, 4, 32, 32}), 1);
    const at::Tensor q = one_hot_labels(torch::randint(0, 4, {ranks, 32, 32}), 4).to(torch::kFloat);
    const at::Tensor m = (torch::rand({ranks, 32, 32}) > 0.3).to(torch::kFloat);
    std::vector<LdcStatistics> locals;
    at::Tensor sum = torch::zeros({3, 3});
    for (int64_t r = 0; r < ranks; ++r) {
      locals.push_back(ldc_statistics(p.slice(0, r, r + 1).clone().requires_grad_(true), q.slice(0, r, r + 1),
                                      m.slice(0, r, r + 1)));
      sum += locals.back().stacked().detach();
    }
    const LdcStatistics global = LdcStatistics::from_stacked(sum);
    const at::Tensor expected = ldc_constraints(global);
    for (const LdcStatistics& local : locals) {
      const LdcStatistics merged = with_global(local, global);
      EXPECT_TRUE(torch::equal(merged.stacked().detach(), global.stacked())) << "merged statistics: global's bits";
      EXPECT_TRUE(torch::equal(ldc_constraints(merged).detach(), expected)) << "and so the constraints";
      const at::Tensor rounded = local.stacked().detach() + (global.stacked() - local.stacked().detach());
      inexact += rounded.ne(global.stacked()).sum().item<int64_t>();
    }
  }
  EXPECT_GT(inexact, 0) << "the data must hold cases where the double-rounding formula goes wrong";
}

TEST(LdcStatistics, ReleasedPriorConstraintIsTheMeanDifference) {
  const at::Tensor logits = torch::zeros({1, 2, 2, 2});
  const at::Tensor y = torch::tensor({1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0}).reshape({1, 2, 2, 2});
  EXPECT_NEAR(released_prior_constraint(logits, y).item<double>(), 0.5 - 0.5, 1e-12);
  EXPECT_NEAR(released_prior_constraint(torch::full({1, 2, 2, 2}, 100.0), y).item<double>(), 0.5, 1e-6);
}

}  // namespace
}  // namespace cmaf::losses
