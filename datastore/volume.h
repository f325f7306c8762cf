// In-memory 3-D volumes and their geometry.
//
// Axis order is (D, H, W) = (slices, rows, columns), C order, W fastest. A NIfTI file stores x
// fastest, so its voxel (i, j, k) is element [k][j][i]: the buffer maps one to one, no
// transpose, and predictions written back with the same header land on the same voxels.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace cmaf::datastore {

using Matrix4 = std::array<double, 16>;  // row-major 4x4

Matrix4 identity_matrix4();

struct VolumeGeometry {
  std::array<int64_t, 3> shape{0, 0, 0};      // D, H, W
  std::array<double, 3> spacing{1.0, 1.0, 1.0};  // z, y, x in mm
  // Voxel (i=x, j=y, k=z, 1) to world (mm) of the source scan. `affine` is the sform when
  // sform_code > 0, else the qform when qform_code > 0, else diag(spacing_x, spacing_y, spacing_z).
  Matrix4 affine = identity_matrix4();
  Matrix4 qform = identity_matrix4();
  Matrix4 sform = identity_matrix4();
  int qform_code = 0;
  int sform_code = 0;

  int64_t voxel_count() const { return shape[0] * shape[1] * shape[2]; }
  int64_t slice_voxels() const { return shape[1] * shape[2]; }
  std::string shape_string() const;    // "85x257x257" (D x H x W)
  std::string spacing_string() const;  // "3x1.5x1.5" (z x y x x, mm)
};

// Geometry of a volume made without a source scan (synthetic data, spacing-only inputs).
VolumeGeometry geometry_from_spacing(std::array<int64_t, 3> shape, std::array<double, 3> spacing);

// Largest absolute element-wise difference of two affines (mm): geometry agreement checks.
double affine_max_difference(const Matrix4& a, const Matrix4& b);

template <typename T>
struct Volume {
  VolumeGeometry geometry;
  std::vector<T> voxels;  // geometry.voxel_count() elements, [d][h][w]
};

}  // namespace cmaf::datastore
