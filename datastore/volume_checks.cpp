#include "datastore/volume_checks.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace cmaf::datastore {

std::string voxel_position(size_t flat_index, const VolumeGeometry& geometry) {
  const auto index = static_cast<int64_t>(flat_index);
  const auto& s = geometry.shape;
  return str("z=", index / (s[1] * s[2]), " y=", (index / s[2]) % s[1], " x=", index % s[2]);
}

void check_finite(const std::vector<float>& voxels, const VolumeGeometry& geometry,
                  const std::string& path) {
  int64_t bad = 0;
  size_t first = 0;
  for (size_t i = 0; i < voxels.size(); ++i) {
    if (!std::isfinite(voxels[i])) {
      if (bad++ == 0) first = i;
    }
  }
  if (bad == 0) return;
  throw InputError(path, "data",
                   str(bad, " voxels are NaN or Inf (first at ", voxel_position(first, geometry),
                       ": ", voxels[first], "), expected finite intensities"));
}

void check_not_constant(const std::vector<float>& voxels, const std::string& path) {
  for (float v : voxels) {
    if (v != voxels.front()) return;
  }
  throw InputError(path, "data",
                   str("every voxel is ", voxels.empty() ? 0.0f : voxels.front(),
                       ": the scan is empty, expected varying intensities"));
}

std::vector<int64_t> constant_slices(const std::vector<float>& voxels, const VolumeGeometry& geometry) {
  const auto plane = static_cast<size_t>(geometry.shape[1] * geometry.shape[2]);
  std::vector<int64_t> out;
  for (int64_t z = 0; z < geometry.shape[0]; ++z) {
    const float* begin = voxels.data() + static_cast<size_t>(z) * plane;
    const float first = begin[0];
    if (std::all_of(begin, begin + plane, [first](float v) { return v == first; })) out.push_back(z);
  }
  return out;
}

void check_same_grid(const VolumeGeometry& image, const std::string& image_path,
                     const VolumeGeometry& label, const std::string& label_path) {
  if (image.shape != label.shape) {
    throw InputError(label_path, "shape",
                     str(label.shape_string(), " (D x H x W) differs from the image ",
                         image_path, " ", image.shape_string(), ", expected the same grid"));
  }
  for (int axis = 0; axis < 3; ++axis) {
    const double a = image.spacing[axis];
    const double b = label.spacing[axis];
    if (std::abs(a - b) > kSpacingRelativeTolerance * std::max(a, b)) {
      throw InputError(label_path, "spacing",
                       str(label.spacing_string(), " mm differs from the image ", image_path, " ",
                           image.spacing_string(), " mm, expected the same voxel spacing"));
    }
  }
  const double difference = affine_max_difference(image.affine, label.affine);
  if (difference > kAffineToleranceMm) {
    throw InputError(label_path, "affine",
                     str("differs from the image ", image_path, " by up to ", difference,
                         " mm, expected the same orientation and origin (tolerance ",
                         kAffineToleranceMm, " mm)"));
  }
}

std::vector<int32_t> to_label_ids(const std::vector<double>& values, const VolumeGeometry& geometry,
                                  const std::string& path) {
  std::vector<int32_t> ids(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    const double v = values[i];
    if (!std::isfinite(v) || v != std::floor(v) || std::abs(v) > 2147483647.0) {
      throw InputError(path, "label data",
                       str("value ", v, " at ", voxel_position(i, geometry),
                           " is not an integer class id, expected integer ids"));
    }
    ids[i] = static_cast<int32_t>(v);
  }
  return ids;
}

LabelStatistics label_statistics(const std::vector<uint8_t>& labels, const VolumeGeometry& geometry,
                                 size_t class_count) {
  LabelStatistics stats;
  stats.class_voxels.assign(class_count, 0);
  stats.class_slices.assign(class_count, 0);
  const auto slice_voxels = static_cast<size_t>(geometry.slice_voxels());
  std::vector<int64_t> in_slice(class_count);
  for (int64_t z = 0; z < geometry.shape[0]; ++z) {
    std::fill(in_slice.begin(), in_slice.end(), 0);
    const uint8_t* slice = labels.data() + static_cast<size_t>(z) * slice_voxels;
    for (size_t i = 0; i < slice_voxels; ++i) ++in_slice[slice[i]];
    for (size_t c = 0; c < class_count; ++c) {
      stats.class_voxels[c] += in_slice[c];
      if (in_slice[c] > 0) ++stats.class_slices[c];
    }
  }
  return stats;
}

}  // namespace cmaf::datastore
