// Exact Euclidean distance transform on a 3-D grid with anisotropic spacing: the separable
// linear-time algorithm of Felzenszwalb and Huttenlocher (lower envelope of parabolas), one pass
// per axis (x, then y, then z). O(voxels), no approximation: the result is the minimum over all
// feature voxels of ((dx sx)^2 + (dy sy)^2) + (dz sz)^2, summed in that order.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace cmaf::core {

// Squared distance (in spacing units squared) from every voxel of a D x H x W grid (row-major,
// x fastest) to the nearest voxel with feature != 0; +infinity everywhere when there is none.
// spacing = (z, y, x).
std::vector<double> squared_distance_transform(const std::vector<uint8_t>& feature, std::array<int64_t, 3> shape,
                                               std::array<double, 3> spacing);

}  // namespace cmaf::core
