#include "datastore/intensity.h"

#include <gtest/gtest.h>

#include "common/error.h"

namespace cmaf::datastore {
namespace {

TEST(Intensity, CtWindowClipsAndScalesToUnitRange) {
  std::vector<float> v{-1000.0f, -125.0f, 75.0f, 275.0f, 3000.0f};
  normalize_intensities(v, parse_intensity_normalization("ct-window", "", "--normalization"), "x");
  EXPECT_EQ(v, (std::vector<float>{0.0f, 0.0f, 0.5f, 1.0f, 1.0f}));
}

TEST(Intensity, BtcvEightBitValuesAreRecoveredExactly) {
  // BTCV here was stored as v/255*400-125 HU; windowing must give back v/255.
  for (int v = 0; v <= 255; ++v) {
    std::vector<float> x{static_cast<float>(v / 255.0 * 400.0 - 125.0)};
    normalize_intensities(x, IntensityNormalization{}, "x");
    EXPECT_NEAR(x[0] * 255.0, v, 1e-3);
  }
}

TEST(Intensity, CustomWindow) {
  std::vector<float> v{-200.0f, 0.0f, 200.0f};
  normalize_intensities(v, parse_intensity_normalization("ct-window", "-200,200", "--w"), "x");
  EXPECT_EQ(v, (std::vector<float>{0.0f, 0.5f, 1.0f}));
}

TEST(Intensity, MrPercentileClipsOutliers) {
  std::vector<float> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  v[999] = 1e6f;  // a hot pixel must not squash the range
  normalize_intensities(v, parse_intensity_normalization("mr-percentile", "1,99", "--n"), "x");
  EXPECT_FLOAT_EQ(v[0], 0.0f);
  EXPECT_FLOAT_EQ(v[999], 1.0f);
  EXPECT_NEAR(v[500], 0.5, 0.01);
}

TEST(Intensity, ConstantVolumeCannotBePercentileNormalised) {
  std::vector<float> v(100, 7.0f);
  EXPECT_THROW(normalize_intensities(v, parse_intensity_normalization("mr-percentile", "", "--n"), "s.nii"),
               InputError);
}

TEST(Intensity, BadOptionsAreNamed) {
  EXPECT_THROW(parse_intensity_normalization("zscore", "", "--normalization"), InputError);
  EXPECT_THROW(parse_intensity_normalization("ct-window", "275,-125", "--window"), InputError);
  EXPECT_THROW(parse_intensity_normalization("ct-window", "1,2,3", "--window"), InputError);
  EXPECT_THROW(parse_intensity_normalization("mr-percentile", "-1,50", "--percentiles"), InputError);
}

}  // namespace
}  // namespace cmaf::datastore
