#include "datastore/slice_augment.h"

#include <gtest/gtest.h>

#include <cmath>

#include "common/error.h"

namespace cmaf::datastore {
namespace {

// Checkerboard of 12-pixel cells with classes 1 and 2; the image holds the class as a float.
struct Board {
  int64_t h, w;
  std::vector<float> image;
  std::vector<uint8_t> label;
};

Board checkerboard(int64_t h, int64_t w) {
  Board b{h, w, {}, {}};
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const uint8_t c = ((y / 12 + x / 12) % 2 == 0) ? 1 : 2;
      b.label.push_back(c);
      b.image.push_back(static_cast<float>(c));
    }
  }
  return b;
}

// Where the bilinear image is exactly a class id, all its source neighbours hold that class, so
// an aligned nearest-neighbour label must equal it. Returns (checked pixels, mismatches).
std::pair<int64_t, int64_t> alignment(const std::vector<float>& image, const std::vector<uint8_t>& label) {
  int64_t checked = 0, wrong = 0;
  for (size_t i = 0; i < image.size(); ++i) {
    if (image[i] != 1.0F && image[i] != 2.0F) continue;
    ++checked;
    wrong += label[i] != static_cast<uint8_t>(image[i]);
  }
  return {checked, wrong};
}

TEST(SliceAugment, IdentityWarpAtTheSourceSizeIsAnExactCopy) {
  const Board b = checkerboard(40, 56);
  const SliceWarp warp(b.h, b.w, b.h, b.w, GeometricParams{});
  std::vector<float> image(b.image.size());
  std::vector<uint8_t> label(b.label.size());
  warp_image(b.image.data(), warp, image.data());
  warp_label(b.label.data(), warp, label.data());
  EXPECT_EQ(image, b.image);
  EXPECT_EQ(label, b.label);
}

TEST(SliceAugment, QuarterTurnsAndFlipsPermutePixelsExactly) {
  const Board b = checkerboard(36, 36);
  std::vector<float> ramp(b.image.size());
  for (size_t i = 0; i < ramp.size(); ++i) ramp[i] = static_cast<float>(i);
  GeometricParams p;
  p.rot90 = 1;
  p.flip_x = true;
  std::vector<float> out(ramp.size());
  warp_image(ramp.data(), SliceWarp(36, 36, 36, 36, p), out.data());
  std::vector<float> sorted = out;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, ramp);  // a permutation: no interpolation, nothing lost
  p.flip_x = false;
  p.rot90 = 4 - 1;  // three quarter turns undo one
  std::vector<float> back(ramp.size());
  GeometricParams one;
  one.rot90 = 1;
  warp_image(ramp.data(), SliceWarp(36, 36, 36, 36, one), out.data());
  warp_image(out.data(), SliceWarp(36, 36, 36, 36, p), back.data());
  EXPECT_EQ(back, ramp);
}

TEST(SliceAugment, ImageAndLabelStayAlignedUnderEveryAugmentation) {
  const Board b = checkerboard(60, 84);  // not square: the resize to 64 x 64 is anisotropic
  AugmentOptions o;
  o.flip_probability = o.rot90_probability = o.rotation_probability = o.scale_probability = 0.7;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    DeterministicRng rng(seed);
    const GeometricParams p = draw_geometry(o, rng);
    const SliceWarp warp(b.h, b.w, 64, 64, p);
    std::vector<float> image(64 * 64);
    std::vector<uint8_t> label(64 * 64);
    warp_image(b.image.data(), warp, image.data());
    warp_label(b.label.data(), warp, label.data());
    const auto [checked, wrong] = alignment(image, label);
    EXPECT_GT(checked, 64 * 64 / 4) << "seed " << seed;
    EXPECT_EQ(wrong, 0) << "seed " << seed << " rotation " << p.rotation_degrees << " scale " << p.scale;
  }
}

TEST(SliceAugment, TheAlignmentCheckCatchesALabelWarpedDifferently) {
  const Board b = checkerboard(60, 60);
  GeometricParams p;
  p.rotation_degrees = 13.0;
  GeometricParams q = p;
  q.flip_x = true;
  std::vector<float> image(64 * 64);
  std::vector<uint8_t> label(64 * 64);
  warp_image(b.image.data(), SliceWarp(60, 60, 64, 64, p), image.data());
  warp_label(b.label.data(), SliceWarp(60, 60, 64, 64, q), label.data());
  EXPECT_GT(alignment(image, label).second, 500);
}

TEST(SliceAugment, OutsideTheSourceIsBackground) {
  const Board b = checkerboard(32, 32);
  GeometricParams p;
  p.scale = 0.5;  // zoom out: a border of the output sees no source
  std::vector<float> image(32 * 32);
  std::vector<uint8_t> label(32 * 32);
  const SliceWarp warp(32, 32, 32, 32, p);
  warp_image(b.image.data(), warp, image.data());
  warp_label(b.label.data(), warp, label.data());
  EXPECT_EQ(image[0], 0.0F);
  EXPECT_EQ(label[0], 0);
  EXPECT_NE(label[16 * 32 + 16], 0);
}

TEST(SliceAugment, IntensityJitterIsSeededAndEachPartDoesWhatItSays) {
  std::vector<float> base(400);
  for (size_t i = 0; i < base.size(); ++i) base[i] = static_cast<float>(i) / 399.0F;
  IntensityParams p;
  p.brightness = 0.1;
  std::vector<float> v = base;
  apply_intensity(v.data(), 400, p);
  EXPECT_NEAR(v[7] - base[7], 0.1, 1e-6);
  p = {};
  p.contrast = 0.5;  // about the mean 0.5
  v = base;
  apply_intensity(v.data(), 400, p);
  EXPECT_NEAR(v[0], 0.25, 1e-6);
  EXPECT_NEAR(v[399], 0.75, 1e-6);
  p = {};
  p.gamma = 2.0;  // on the slice's range [0, 1]
  v = base;
  apply_intensity(v.data(), 400, p);
  EXPECT_NEAR(v[200], std::pow(200.0 / 399.0, 2.0), 1e-6);
  EXPECT_EQ(v[0], 0.0F);
  p = {};
  p.noise_std = 0.1;
  p.noise_seed = 9;
  std::vector<float> a = base, c = base;
  apply_intensity(a.data(), 400, p);
  apply_intensity(c.data(), 400, p);
  EXPECT_EQ(a, c);
  double sq = 0.0;
  for (size_t i = 0; i < a.size(); ++i) sq += (a[i] - base[i]) * (a[i] - base[i]);
  EXPECT_NEAR(std::sqrt(sq / 400.0), 0.1, 0.02);
}

TEST(SliceAugment, DisabledAugmentationIsTheIdentityButConsumesTheSameRandomness) {
  AugmentOptions off;
  off.enabled = false;
  DeterministicRng a(4), b(4);
  const GeometricParams g = draw_geometry(off, a);
  const IntensityParams i = draw_intensity(off, 1.0, a);
  EXPECT_EQ(g.rot90, 0);
  EXPECT_EQ(g.scale, 1.0);
  EXPECT_EQ(i.gamma, 1.0);
  draw_geometry(AugmentOptions{}, b);
  draw_intensity(AugmentOptions{}, 1.0, b);
  EXPECT_EQ(a.next_u64(), b.next_u64());
}

TEST(SliceAugment, OptionsOutOfRangeNameTheOption) {
  AugmentOptions o;
  o.max_rotation_degrees = 400;
  try {
    check_augment_options(o);
    FAIL() << "accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--max-rotation-degrees"), std::string::npos) << e.what();
  }
  o = {};
  o.min_scale = 0.0;
  EXPECT_THROW(check_augment_options(o), InputError);
  o = {};
  o.flip_probability = 1.5;
  EXPECT_THROW(check_augment_options(o), InputError);
  EXPECT_NO_THROW(check_augment_options(AugmentOptions{}));
}

}  // namespace
}  // namespace cmaf::datastore
