#include <gtest/gtest.h>

#include "core/pseudo_label_pool.h"

namespace cmaf::core {
namespace {

// Counts per class: background, then organs. predicted = teacher argmax pixels, confident = of
// those at or above the base threshold.
TEST(PoolThresholds, FixedKeepsTheBaseForEveryClass) {
  EXPECT_EQ(pool_thresholds(ThresholdMode::kFixed, 0.8, {100, 50, 10}, {90, 40, 0}),
            (std::vector<double>{0.8, 0.8, 0.8}));
}

TEST(PoolThresholds, AdaptiveLowersTheBarForOrgansTheTeacherIsRarelySureOf) {
  // Acceptance 0.8 (the best), 0.4 and 0 (and 0 for an organ never predicted).
  const auto t = pool_thresholds(ThresholdMode::kAdaptive, 0.8, {1000, 100, 100, 50, 0}, {10, 80, 40, 0, 0});
  ASSERT_EQ(t.size(), 5U);
  EXPECT_DOUBLE_EQ(t[0], 0.8);              // background is not adapted
  EXPECT_DOUBLE_EQ(t[1], 0.8);              // the best organ keeps the base
  EXPECT_DOUBLE_EQ(t[2], 0.8 * 0.75);       // half the best acceptance
  EXPECT_DOUBLE_EQ(t[3], 0.4);              // none accepted: base / 2
  EXPECT_DOUBLE_EQ(t[4], 0.4);
}

TEST(PoolThresholds, AdaptiveStartsAnEarlyTeacherAtHalfTheBase) {
  // No organ pixel reaches the base threshold (measured on BTCV at step 200 of a 2000-step run):
  // with the base kept, no organ would ever enter the pool.
  EXPECT_EQ(pool_thresholds(ThresholdMode::kAdaptive, 0.8, {18000, 1000, 200}, {2600, 0, 0}),
            (std::vector<double>{0.8, 0.4, 0.4}));
}

}  // namespace
}  // namespace cmaf::core
