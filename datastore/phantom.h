// Synthetic abdominal phantom: the embedded default data of the quick start and the tests.
//
// A body ellipse (fat rim, soft tissue) holding K organs as smooth, lobed blobs whose sizes fall
// geometrically from liver-like to gallbladder-like, so class frequencies are long-tailed as in
// abdominal CT (largest/smallest organ volume ~ 500x). Intensities are generated in HU with a
// per-organ mean and per-site scanner offset, contrast and noise, then CT-windowed to [0, 1]
// like real prep output. Fully deterministic in (spec, seed, case index, site).
#pragma once

#include <cstdint>
#include <vector>

#include "datastore/volume.h"

namespace cmaf::datastore {

struct PhantomSpec {
  int64_t size = 128;   // H = W
  int64_t slices = 32;  // D
  int classes = 8;      // foreground organs; label ids 0..classes
};

struct PhantomCase {
  VolumeGeometry geometry;
  std::vector<float> image;    // [0, 1]
  std::vector<uint8_t> label;  // 0..classes
};

PhantomCase generate_phantom_case(const PhantomSpec& spec, uint64_t seed, int case_index, int site);

}  // namespace cmaf::datastore
