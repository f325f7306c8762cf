#include "losses/lagrange_multipliers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/error.h"
#include "losses/ldc_statistics.h"

namespace cmaf::losses {
namespace {

MultiplierOptions options(double eta, std::vector<double> eps, double lambda_max) {
  MultiplierOptions o;
  o.eta = eta;
  o.tolerances = std::move(eps);
  o.lambda_max = lambda_max;
  return o;
}

TEST(LagrangeMultipliers, ProjectedStepClipsAtZeroAndAtTheUpperBound) {
  LagrangeMultipliers m(3, options(1.0, {0.1, 0.1, 0.1}, 2.0));
  m.update({0.6, 0.1, -5.0});  // +0.5, 0, -5.1 -> clipped to 0
  EXPECT_EQ(m.values(), (std::vector<double>{0.5, 0.0, 0.0}));
  m.update({10.0, 0.3, 0.0});
  EXPECT_EQ(m.values()[0], 2.0);  // clipped at lambda_max
  EXPECT_DOUBLE_EQ(m.values()[1], 0.2);
  EXPECT_EQ(m.updates(), 2);
}

TEST(LagrangeMultipliers, ReleasedScalarModeIsUnprojectedWithStep001) {
  LagrangeMultipliers m = LagrangeMultipliers::released_scalar();
  m.update({-3.0});
  EXPECT_DOUBLE_EQ(m.values()[0], -0.03);
}

TEST(LagrangeMultipliers, IdenticalUpdatesGiveIdenticalFingerprints) {
  LagrangeMultipliers a(4, MultiplierOptions{}), b(4, MultiplierOptions{});
  const std::vector<std::vector<double>> steps{{0.3, 0.2, 0.9, 0.05}, {0.31, 0.25, 0.7, 0.5}};
  for (const auto& c : steps) {
    a.update(c);
    b.update(c);
  }
  EXPECT_EQ(a.fingerprint(), b.fingerprint());
  b.update({0.3, 0.2, 0.9, 0.05 + 1e-15});
  a.update({0.3, 0.2, 0.9, 0.05});
  EXPECT_NE(a.fingerprint(), b.fingerprint());  // a one-ulp difference shows
}

TEST(LagrangeMultipliers, SaveRestoreRoundTripIsBitExact) {
  LagrangeMultipliers a(3, options(0.1, {0.05, 0.1, 0.2}, 5.0));
  a.update({0.1 / 3.0, 0.7, 0.123456789012345678});
  const LagrangeMultipliers b = LagrangeMultipliers::from_json(nlohmann::json::parse(a.to_json().dump()), "state");
  EXPECT_EQ(b.fingerprint(), a.fingerprint());
  EXPECT_EQ(b.values(), a.values());
  EXPECT_EQ(b.tolerances(), a.tolerances());
  EXPECT_EQ(b.updates(), 1);
  EXPECT_THROW(LagrangeMultipliers::from_json({{"kind", "inequality"}}, "state"), InputError);
}

TEST(LagrangeMultipliers, NonFiniteConstraintsAreRefused) {
  LagrangeMultipliers m(1, MultiplierOptions{});
  EXPECT_THROW(m.update({std::nan("")}), InternalError);
  EXPECT_EQ(m.values()[0], 0.0);
}

// minimise (x - 3)^2 subject to x <= 1. KKT: x* = 1, 2 (x* - 3) + lambda* = 0, so lambda* = 4.
// Primal gradient steps on the Lagrangian (through lagrangian_term and autograd) alternate with
// dual steps: the constraint becomes active and lambda approaches 4.
TEST(LagrangeMultipliers, DualAscentReachesTheKktPointOfAConvexProblem) {
  LagrangeMultipliers multipliers(1, options(0.2, {1.0}, 100.0));
  at::Tensor x = torch::tensor({0.0}, torch::kDouble).requires_grad_(true);
  for (int iteration = 0; iteration < 400; ++iteration) {
    for (int inner = 0; inner < 20; ++inner) {
      const at::Tensor lagrangian = (x - 3.0).square().sum() +
                                    lagrangian_term(x, multipliers.values(), multipliers.tolerances());
      x.mutable_grad() = at::Tensor();
      lagrangian.backward();
      torch::NoGradGuard no_grad;
      x -= 0.1 * x.grad();
    }
    multipliers.update({x.item<double>()});
  }
  EXPECT_NEAR(x.item<double>(), 1.0, 1e-3);
  EXPECT_NEAR(multipliers.values()[0], 4.0, 1e-2);
}

}  // namespace
}  // namespace cmaf::losses
