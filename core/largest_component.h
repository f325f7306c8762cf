// Post-processing of a predicted label volume: per organ, keep only its largest 3-D connected
// component (26-connectivity: voxels touching by a face, an edge or a corner are connected), the
// rest becomes background. nnU-Net's "remove all but the largest component", applied to every
// organ: a single-organ-per-scan prior that removes stray false positives far from the organ,
// which dominate HD95, and also removes true parts of an organ the prediction split in two.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace cmaf::core {

// `labels`: D x H x W (row-major, x fastest), class ids < 256, 0 = background. Returns the
// number of voxels set to background.
int64_t keep_largest_component(std::vector<uint8_t>& labels, std::array<int64_t, 3> shape);

}  // namespace cmaf::core
