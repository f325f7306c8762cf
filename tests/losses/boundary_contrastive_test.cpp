#include "losses/boundary_contrastive.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/losses/finite_difference.h"

namespace cmaf::losses {
namespace {

// A 4x4 square of class 1 at rows/cols 2..5 of an 8x8 background.
at::Tensor square_labels() {
  at::Tensor y = torch::zeros({1, 8, 8}, torch::kLong);
  y.slice(1, 2, 6).slice(2, 2, 6).fill_(1);
  return y;
}

TEST(BoundaryContrastive, BoundaryOfASquareIsExactlyItsOutline) {
  const at::Tensor labels = square_labels();
  const at::Tensor band = boundary_band(labels, 2);
  // The square's own boundary pixels: its 12 outline pixels, not its 4 interior ones.
  at::Tensor outline = torch::zeros({1, 8, 8}, torch::kBool);
  outline.slice(1, 2, 6).slice(2, 2, 6).fill_(true);
  outline.slice(1, 3, 5).slice(2, 3, 5).fill_(false);
  EXPECT_TRUE(torch::equal(band.logical_and(labels.eq(1)), outline));
  // The background side: the 20 pixels of the ring just outside (corners included).
  at::Tensor ring = torch::zeros({1, 8, 8}, torch::kBool);
  ring.slice(1, 1, 7).slice(2, 1, 7).fill_(true);
  ring.slice(1, 2, 6).slice(2, 2, 6).fill_(false);
  EXPECT_TRUE(torch::equal(band.logical_and(labels.eq(0)), ring));
  // Ignored pixels are never boundary.
  at::Tensor ignored = labels.clone();
  ignored[0][2][2] = -1;
  EXPECT_FALSE(boundary_band(ignored, 2)[0][2][2].item<bool>());
}

TEST(BoundaryContrastive, ClusteredEmbeddingsScoreLowerThanShuffledOnes) {
  torch::manual_seed(0);
  at::Tensor labels = torch::zeros({2, 16, 16}, torch::kLong);
  labels.slice(1, 3, 9).slice(2, 3, 9).fill_(1);
  labels.slice(1, 10, 14).slice(2, 2, 12).fill_(2);
  // Embeddings: one direction per class, plus noise.
  const at::Tensor directions = torch::eye(8).slice(0, 0, 3);  // [3, 8]
  at::Tensor clustered = directions.index_select(0, labels.reshape({-1})).reshape({2, 16, 16, 8}).permute({0, 3, 1, 2});
  clustered = clustered + 0.1 * torch::randn_like(clustered);
  clustered = clustered / clustered.norm(2, 1, true);
  const at::Tensor permutation = torch::randperm(2 * 16 * 16);
  const at::Tensor flat = clustered.permute({0, 2, 3, 1}).reshape({-1, 8});
  const at::Tensor shuffled = flat.index_select(0, permutation).reshape({2, 16, 16, 8}).permute({0, 3, 1, 2});
  const double good = boundary_contrastive_loss(clustered, labels, 3).item<double>();
  const double bad = boundary_contrastive_loss(shuffled, labels, 3).item<double>();
  EXPECT_LT(good, 0.5 * bad) << good << " vs " << bad;
}

TEST(BoundaryContrastive, DegenerateBatchesGiveZeroNotNan) {
  const at::Tensor e = torch::randn({1, 8, 8, 8}, torch::requires_grad());
  const at::Tensor background = torch::zeros({1, 8, 8}, torch::kLong);
  const at::Tensor all_ignored = torch::full({1, 8, 8}, -1, torch::kLong);
  for (const at::Tensor& labels : {background, all_ignored}) {
    const at::Tensor loss = boundary_contrastive_loss(e, labels, 3);
    EXPECT_EQ(loss.item<double>(), 0.0);
    loss.backward();  // still differentiable
    EXPECT_TRUE(torch::isfinite(e.grad()).all().item<bool>());
  }
  // A class present only as a few labels and absent elsewhere: finite.
  at::Tensor rare = background.clone();
  rare[0][4][4] = 2;
  EXPECT_TRUE(std::isfinite(boundary_contrastive_loss(e, rare, 3).item<double>()));
}

TEST(BoundaryContrastive, SamplingIsSeededAndBounded) {
  torch::manual_seed(1);
  const at::Tensor e = torch::randn({1, 4, 16, 16});
  at::Tensor labels = torch::zeros({1, 16, 16}, torch::kLong);
  labels.slice(1, 2, 14).slice(2, 2, 14).fill_(1);
  ContrastiveOptions o;
  o.max_anchors_per_class = 5;
  o.max_band_negatives = 7;
  o.seed = 3;
  const double a = boundary_contrastive_loss(e, labels, 2, o).item<double>();
  EXPECT_EQ(a, boundary_contrastive_loss(e, labels, 2, o).item<double>());
  o.seed = 4;
  EXPECT_NE(a, boundary_contrastive_loss(e, labels, 2, o).item<double>());
}

TEST(BoundaryContrastive, GradientMatchesFiniteDifferences) {
  torch::manual_seed(2);
  at::Tensor labels = torch::zeros({1, 6, 6}, torch::kLong);
  labels.slice(1, 1, 4).slice(2, 1, 4).fill_(1);
  labels[0][5][5] = 2;
  ContrastiveOptions o;
  o.temperature = 0.5;  // a smoother function for finite differences
  test::expect_gradient_matches_finite_differences(
      [&](const at::Tensor& x) { return boundary_contrastive_loss(x, labels, 3, o); },
      torch::randn({1, 3, 6, 6}, torch::kDouble));
}

TEST(BoundaryContrastive, ProjectionHeadGivesUnitVectorsOf64Dimensions) {
  ProjectionHead head(8);
  const at::Tensor z = head->forward(torch::randn({2, 8, 5, 7}));
  EXPECT_EQ(z.sizes(), (std::vector<int64_t>{2, 64, 5, 7}));
  EXPECT_TRUE(torch::allclose(z.norm(2, 1), torch::ones({2, 5, 7}), 1e-5, 1e-5));
}

}  // namespace
}  // namespace cmaf::losses
