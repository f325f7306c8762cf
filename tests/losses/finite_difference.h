// Central finite differences in double precision against autograd, for loss gradient tests.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>

namespace cmaf::test {

inline void expect_gradient_matches_finite_differences(
    const std::function<at::Tensor(const at::Tensor&)>& f, const at::Tensor& point,
    double step = 1e-6, double tolerance = 1e-6) {
  const at::Tensor x = point.detach().to(at::kDouble).requires_grad_(true);
  f(x).backward();
  const at::Tensor analytic = x.grad().reshape({-1});
  const int64_t n = x.numel();
  ASSERT_GT(analytic.abs().sum().item<double>(), 0.0) << "the gradient is zero everywhere";
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor plus = x.detach().clone();
    at::Tensor minus = x.detach().clone();
    plus.view({-1})[i] += step;
    minus.view({-1})[i] -= step;
    const double numeric = (f(plus).item<double>() - f(minus).item<double>()) / (2.0 * step);
    const double exact = analytic[i].item<double>();
    EXPECT_NEAR(exact, numeric, tolerance * (1.0 + std::abs(numeric))) << "element " << i;
  }
}

}  // namespace cmaf::test
