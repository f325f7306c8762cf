#include "core/segmentation_metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "common/random.h"
#include "core/distance_transform.h"

namespace cmaf::core {
namespace {

using Shape = std::array<int64_t, 3>;

std::vector<double> brute_force(const std::vector<uint8_t>& feature, Shape s, std::array<double, 3> spacing) {
  std::vector<double> out(feature.size(), std::numeric_limits<double>::infinity());
  for (int64_t z = 0; z < s[0]; ++z)
    for (int64_t y = 0; y < s[1]; ++y)
      for (int64_t x = 0; x < s[2]; ++x)
        for (int64_t fz = 0; fz < s[0]; ++fz)
          for (int64_t fy = 0; fy < s[1]; ++fy)
            for (int64_t fx = 0; fx < s[2]; ++fx) {
              if (!feature[static_cast<size_t>((fz * s[1] + fy) * s[2] + fx)]) continue;
              const double dx = static_cast<double>(x - fx) * spacing[2];
              const double dy = static_cast<double>(y - fy) * spacing[1];
              const double dz = static_cast<double>(z - fz) * spacing[0];
              double& o = out[static_cast<size_t>((z * s[1] + y) * s[2] + x)];
              o = std::min(o, (dx * dx + dy * dy) + dz * dz);
            }
  return out;
}

std::vector<uint8_t> random_mask(Shape s, double density, uint64_t seed) {
  DeterministicRng rng(seed);
  std::vector<uint8_t> m(static_cast<size_t>(s[0] * s[1] * s[2]));
  for (auto& v : m) v = rng.uniform() < density;
  return m;
}

TEST(DistanceTransform, EqualsBruteForceExactlyOnRandomVolumes) {
  const Shape s{5, 7, 9};
  for (uint64_t seed = 0; seed < 12; ++seed) {
    const std::array<double, 3> spacing{static_cast<double>(1 + seed % 3), 1.0, static_cast<double>(1 + seed % 2)};
    const auto mask = random_mask(s, seed % 4 == 0 ? 0.02 : 0.15, seed);
    EXPECT_EQ(squared_distance_transform(mask, s, spacing), brute_force(mask, s, spacing)) << "seed " << seed;
  }
}

TEST(DistanceTransform, AnisotropicRealSpacingMatchesBruteForceToRounding) {
  const Shape s{6, 8, 7};
  const std::array<double, 3> spacing{2.5, 0.8, 0.7};
  for (uint64_t seed = 20; seed < 26; ++seed) {
    const auto mask = random_mask(s, 0.05, seed);
    const auto fast = squared_distance_transform(mask, s, spacing);
    const auto slow = brute_force(mask, s, spacing);
    for (size_t i = 0; i < fast.size(); ++i) ASSERT_NEAR(fast[i], slow[i], 1e-9 * (1.0 + slow[i])) << i;
  }
}

TEST(DistanceTransform, NoFeatureIsInfiniteEverywhere) {
  const auto d = squared_distance_transform(std::vector<uint8_t>(27, 0), {3, 3, 3}, {1, 1, 1});
  for (double v : d) EXPECT_TRUE(std::isinf(v));
}

std::vector<uint8_t> cube(Shape s, Shape lo, int64_t side, uint8_t label) {
  std::vector<uint8_t> m(static_cast<size_t>(s[0] * s[1] * s[2]), 0);
  for (int64_t z = lo[0]; z < lo[0] + side; ++z)
    for (int64_t y = lo[1]; y < lo[1] + side; ++y)
      for (int64_t x = lo[2]; x < lo[2] + side; ++x) m[static_cast<size_t>((z * s[1] + y) * s[2] + x)] = label;
  return m;
}

// A ball of radius r (mm) about the grid centre with spacing (z, y, x).
std::vector<uint8_t> ball(Shape s, std::array<double, 3> spacing, double r) {
  std::vector<uint8_t> m(static_cast<size_t>(s[0] * s[1] * s[2]), 0);
  for (int64_t z = 0; z < s[0]; ++z)
    for (int64_t y = 0; y < s[1]; ++y)
      for (int64_t x = 0; x < s[2]; ++x) {
        const double dz = (static_cast<double>(z) - static_cast<double>(s[0] - 1) / 2) * spacing[0];
        const double dy = (static_cast<double>(y) - static_cast<double>(s[1] - 1) / 2) * spacing[1];
        const double dx = (static_cast<double>(x) - static_cast<double>(s[2] - 1) / 2) * spacing[2];
        m[static_cast<size_t>((z * s[1] + y) * s[2] + x)] = dz * dz + dy * dy + dx * dx <= r * r;
      }
  return m;
}

TEST(SegmentationMetrics, DiceOfShiftedCubes) {
  const Shape s{20, 20, 20};
  const auto truth = cube(s, {5, 5, 5}, 10, 1);
  const auto prediction = cube(s, {5, 5, 7}, 10, 1);  // shifted 2 voxels along x: overlap 8/10
  const auto m = case_metrics(prediction, truth, s, {1, 1, 1}, {1})[0];
  EXPECT_DOUBLE_EQ(*m.dice, 0.8);
  EXPECT_DOUBLE_EQ(m.paper_dice, 0.8);
  EXPECT_EQ(m.prediction_voxels, 1000);
  EXPECT_DOUBLE_EQ(*m.volume_difference, 0.0);
  EXPECT_DOUBLE_EQ(*m.hd95_mm, 2.0);  // the two x faces are 2 apart; every other surface point 0-2
}

TEST(SegmentationMetrics, Hd95OfConcentricSpheresInVoxelsAndMillimetres) {
  const Shape s{41, 41, 41};
  const auto truth = ball(s, {1, 1, 1}, 10.0);
  const auto prediction = ball(s, {1, 1, 1}, 13.0);
  const auto m = case_metrics(prediction, truth, s, {1, 1, 1}, {1})[0];
  EXPECT_NEAR(*m.hd95_mm, 3.0, 0.5);
  EXPECT_NEAR(m.paper_hd95_voxels, *m.hd95_mm, 1e-12);
  EXPECT_NEAR(*m.assd_mm, 3.0, 0.5);
  // Anisotropic: balls of 10 and 14 mm on a (2.0, 1.0, 1.0) mm grid. In mm the gap is ~4; the
  // papers' voxel HD95 ignores spacing and sees a different number.
  const Shape a{25, 41, 41};
  const std::array<double, 3> spacing{2.0, 1.0, 1.0};
  const auto ma = case_metrics(ball(a, spacing, 14.0), ball(a, spacing, 10.0), a, spacing, {1})[0];
  EXPECT_NEAR(*ma.hd95_mm, 4.0, 0.75);
  EXPECT_GT(std::abs(ma.paper_hd95_voxels - *ma.hd95_mm), 0.1);
  EXPECT_NEAR(ma.truth_ml, 4.0 / 3.0 * M_PI * 1000.0 / 1000.0, 0.2);  // 4.19 mL ball
}

TEST(SegmentationMetrics, EveryEmptyAndNonEmptyCombinationInBothConventions) {
  const Shape s{8, 8, 8};
  const auto empty = std::vector<uint8_t>(512, 0);
  const auto full = cube(s, {2, 2, 2}, 4, 1);
  const auto both_empty = case_metrics(empty, empty, s, {1, 1, 1}, {1})[0];
  EXPECT_FALSE(both_empty.dice);
  EXPECT_FALSE(both_empty.hd95_mm);
  EXPECT_EQ(both_empty.paper_dice, 0.0);
  EXPECT_EQ(both_empty.paper_hd95_voxels, 0.0);
  const auto false_positive = case_metrics(full, empty, s, {1, 1, 1}, {1})[0];
  EXPECT_EQ(*false_positive.dice, 0.0);
  EXPECT_FALSE(false_positive.hd95_mm);
  EXPECT_FALSE(false_positive.volume_difference);
  EXPECT_EQ(false_positive.paper_dice, 1.0);  // the papers' convention rewards it
  EXPECT_EQ(false_positive.paper_hd95_voxels, 0.0);
  const auto missed = case_metrics(empty, full, s, {1, 1, 1}, {1})[0];
  EXPECT_EQ(*missed.dice, 0.0);
  EXPECT_FALSE(missed.hd95_mm);
  EXPECT_EQ(*missed.volume_difference, -1.0);
  EXPECT_EQ(missed.paper_dice, 0.0);
  EXPECT_EQ(missed.paper_hd95_voxels, 0.0);
  const auto perfect = case_metrics(full, full, s, {1, 1, 1}, {1})[0];
  EXPECT_EQ(*perfect.dice, 1.0);
  EXPECT_EQ(*perfect.hd95_mm, 0.0);
}

TEST(SegmentationMetrics, MeansLeaveUndefinedValuesOutAndCountThem) {
  const Shape s{8, 8, 8};
  const auto empty = std::vector<uint8_t>(512, 0);
  const auto full = cube(s, {2, 2, 2}, 4, 1);
  std::vector<CaseResult> cases{{"a", "x", case_metrics(full, full, s, {1, 1, 1}, {1})},
                                {"b", "y", case_metrics(empty, empty, s, {1, 1, 1}, {1})}};
  const nlohmann::json summary = summarize(cases, {"background", "organ"});
  EXPECT_EQ(summary["per_class"]["organ"]["dice"], 1.0);
  EXPECT_EQ(summary["per_class"]["organ"]["dice_undefined"], 1);
  EXPECT_EQ(summary["per_class"]["organ"]["paper_dice"], 0.5);  // (1 + 0) / 2: the empty case scores 0
  EXPECT_EQ(summary["per_site"]["x"]["dice"], 1.0);
  EXPECT_TRUE(summary["per_site"]["y"]["dice"].is_null());
}

}  // namespace
}  // namespace cmaf::core
