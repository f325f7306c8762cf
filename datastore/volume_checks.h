// Checks every scan passes before it becomes a case. Each throws an InputError naming the
// file, the field and what was expected.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "datastore/volume.h"

namespace cmaf::datastore {

// Geometry tolerance between an image and its label: affines may differ by float rounding.
inline constexpr double kAffineToleranceMm = 1e-2;
inline constexpr double kSpacingRelativeTolerance = 1e-4;

// "z=3 y=100 x=20" for the flat index of a voxel, for messages.
std::string voxel_position(size_t flat_index, const VolumeGeometry& geometry);

// No NaN or Inf; reports how many and the first voxel's (z, y, x).
void check_finite(const std::vector<float>& voxels, const VolumeGeometry& geometry,
                  const std::string& path);

// A volume whose voxels all hold one value is an empty scan (failed export, blank series).
void check_not_constant(const std::vector<float>& voxels, const std::string& path);

// The z indices of the slices whose voxels all hold one value (a blank end of a series, padding).
// Not an error: prep reports them, since a network sees such a slice as an input like any other
// (on BTCV every scan ends with one, and an early teacher labeled it an organ).
std::vector<int64_t> constant_slices(const std::vector<float>& voxels, const VolumeGeometry& geometry);

// Same shape, spacing and affine (within the tolerances above).
void check_same_grid(const VolumeGeometry& image, const std::string& image_path,
                     const VolumeGeometry& label, const std::string& label_path);

// Stored label values (any numeric type, read as double) to integer ids; a non-integral or
// non-finite value is an InputError naming the voxel.
std::vector<int32_t> to_label_ids(const std::vector<double>& values, const VolumeGeometry& geometry,
                                  const std::string& path);

struct LabelStatistics {
  std::vector<int64_t> class_voxels;  // per class id
  std::vector<int64_t> class_slices;  // slices that contain the class
};

// `labels` holds ids < class_count (apply_label_map guarantees it).
LabelStatistics label_statistics(const std::vector<uint8_t>& labels, const VolumeGeometry& geometry,
                                 size_t class_count);

}  // namespace cmaf::datastore
