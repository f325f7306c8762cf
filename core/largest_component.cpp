#include "core/largest_component.h"

#include "common/error.h"

namespace cmaf::core {

int64_t keep_largest_component(std::vector<uint8_t>& labels, std::array<int64_t, 3> shape) {
  const int64_t d = shape[0], h = shape[1], w = shape[2];
  CMAF_CHECK(d >= 0 && h >= 0 && w >= 0 && static_cast<int64_t>(labels.size()) == d * h * w,
             "labels hold ", labels.size(), " voxels, shape ", d, "x", h, "x", w);
  // component[i]: index (into `sizes`) of the component voxel i belongs to, -1 for background.
  std::vector<int32_t> component(labels.size(), -1);
  std::vector<int64_t> sizes;
  std::vector<uint8_t> component_class;
  std::vector<int64_t> stack;
  for (int64_t start = 0; start < static_cast<int64_t>(labels.size()); ++start) {
    const uint8_t cls = labels[static_cast<size_t>(start)];
    if (cls == 0 || component[static_cast<size_t>(start)] >= 0) continue;
    const auto id = static_cast<int32_t>(sizes.size());
    int64_t size = 0;
    component[static_cast<size_t>(start)] = id;
    stack.push_back(start);
    while (!stack.empty()) {
      const int64_t i = stack.back();
      stack.pop_back();
      ++size;
      const int64_t z = i / (h * w), y = (i / w) % h, x = i % w;
      for (int64_t dz = -1; dz <= 1; ++dz) {
        const int64_t nz = z + dz;
        if (nz < 0 || nz >= d) continue;
        for (int64_t dy = -1; dy <= 1; ++dy) {
          const int64_t ny = y + dy;
          if (ny < 0 || ny >= h) continue;
          for (int64_t dx = -1; dx <= 1; ++dx) {
            const int64_t nx = x + dx;
            if (nx < 0 || nx >= w) continue;
            const auto n = static_cast<size_t>((nz * h + ny) * w + nx);
            if (labels[n] != cls || component[n] >= 0) continue;
            component[n] = id;
            stack.push_back(static_cast<int64_t>(n));
          }
        }
      }
    }
    sizes.push_back(size);
    component_class.push_back(cls);
  }
  // The largest component of each class (the first found among equals: the lowest voxel index).
  std::array<int32_t, 256> largest;
  largest.fill(-1);
  for (size_t c = 0; c < sizes.size(); ++c) {
    int32_t& best = largest[component_class[c]];
    if (best < 0 || sizes[c] > sizes[static_cast<size_t>(best)]) best = static_cast<int32_t>(c);
  }
  int64_t removed = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (component[i] >= 0 && component[i] != largest[labels[i]]) {
      labels[i] = 0;
      ++removed;
    }
  }
  return removed;
}

}  // namespace cmaf::core
