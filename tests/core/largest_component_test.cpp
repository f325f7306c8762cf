#include "core/largest_component.h"

#include <gtest/gtest.h>

#include <vector>

namespace cmaf::core {
namespace {

struct Grid {
  std::array<int64_t, 3> shape;
  std::vector<uint8_t> labels;
  explicit Grid(std::array<int64_t, 3> s) : shape(s), labels(static_cast<size_t>(s[0] * s[1] * s[2]), 0) {}
  uint8_t& at(int64_t z, int64_t y, int64_t x) { return labels[static_cast<size_t>((z * shape[1] + y) * shape[2] + x)]; }
};

TEST(LargestComponent, EachOrganKeepsItsLargestComponentOnly) {
  Grid g({4, 6, 6});
  // Organ 1: a 2x2x2 cube (8 voxels) and a 3-voxel bar far away.
  for (int64_t z = 0; z < 2; ++z)
    for (int64_t y = 0; y < 2; ++y)
      for (int64_t x = 0; x < 2; ++x) g.at(z, y, x) = 1;
  for (int64_t x = 3; x < 6; ++x) g.at(3, 5, x) = 1;
  // Organ 2: 2 voxels touching organ 1's cube, and a single voxel elsewhere. Touching another
  // organ does not join components.
  g.at(0, 2, 0) = 2;
  g.at(0, 2, 1) = 2;
  g.at(3, 0, 5) = 2;
  // Organ 3: one component only, left as it is.
  g.at(2, 4, 2) = 3;
  const std::vector<uint8_t> before = g.labels;
  EXPECT_EQ(keep_largest_component(g.labels, g.shape), 4);
  for (int64_t x = 3; x < 6; ++x) EXPECT_EQ(g.at(3, 5, x), 0) << x;
  EXPECT_EQ(g.at(3, 0, 5), 0);
  EXPECT_EQ(g.at(0, 0, 0), 1);
  EXPECT_EQ(g.at(1, 1, 1), 1);
  EXPECT_EQ(g.at(0, 2, 1), 2);
  EXPECT_EQ(g.at(2, 4, 2), 3);
  // Idempotent: nothing more to remove.
  const std::vector<uint8_t> once = g.labels;
  EXPECT_EQ(keep_largest_component(g.labels, g.shape), 0);
  EXPECT_EQ(g.labels, once);
  EXPECT_NE(before, once);
}

TEST(LargestComponent, VoxelsTouchingByACornerAreOneComponent) {
  Grid g({3, 5, 5});
  // A diagonal line through cube corners: one 26-connected component of 3 voxels (three of 1
  // voxel under face connectivity), so it outweighs a face-connected pair of 2.
  g.at(0, 0, 0) = 1;
  g.at(1, 1, 1) = 1;
  g.at(2, 2, 2) = 1;
  g.at(0, 4, 3) = 1;
  g.at(0, 4, 4) = 1;
  EXPECT_EQ(keep_largest_component(g.labels, g.shape), 2);
  EXPECT_EQ(g.at(0, 4, 3), 0);
  EXPECT_EQ(g.at(0, 4, 4), 0);
  EXPECT_EQ(g.at(0, 0, 0), 1);
  EXPECT_EQ(g.at(2, 2, 2), 1);
  // Empty volumes and empty grids are left alone.
  Grid empty({2, 2, 2});
  EXPECT_EQ(keep_largest_component(empty.labels, empty.shape), 0);
  std::vector<uint8_t> none;
  EXPECT_EQ(keep_largest_component(none, {0, 4, 4}), 0);
}

}  // namespace
}  // namespace cmaf::core
