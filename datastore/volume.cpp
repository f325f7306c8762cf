#include "datastore/volume.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace cmaf::datastore {

Matrix4 identity_matrix4() {
  return {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
}

std::string VolumeGeometry::shape_string() const {
  return str(shape[0], "x", shape[1], "x", shape[2]);
}

std::string VolumeGeometry::spacing_string() const {
  return str(spacing[0], "x", spacing[1], "x", spacing[2]);
}

VolumeGeometry geometry_from_spacing(std::array<int64_t, 3> shape, std::array<double, 3> spacing) {
  VolumeGeometry geometry;
  geometry.shape = shape;
  geometry.spacing = spacing;
  Matrix4 affine = identity_matrix4();
  affine[0] = spacing[2];   // x
  affine[5] = spacing[1];   // y
  affine[10] = spacing[0];  // z
  geometry.affine = affine;
  geometry.qform = affine;
  geometry.qform_code = 1;  // NIFTI_XFORM_SCANNER_ANAT
  return geometry;
}

double affine_max_difference(const Matrix4& a, const Matrix4& b) {
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

}  // namespace cmaf::datastore
