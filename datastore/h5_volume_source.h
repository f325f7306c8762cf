// Reading foreign HDF5 volumes (TransUNet test_vol_h5, SSL4MIS, cmaformer case files) as prep
// input: dataset `image` (any real type, D x H x W) and optional `label` (integer ids).
#pragma once

#include <array>
#include <optional>
#include <string>

#include "datastore/volume.h"

namespace cmaf::datastore {

struct H5VolumeHeader {
  VolumeGeometry geometry;  // spacing/affine from the file's attributes, else from `spacing`
  bool has_label = false;
  bool spacing_from_file = false;
};

// `fallback_spacing`: used when the file carries no `spacing` attribute (z, y, x mm).
H5VolumeHeader read_h5_volume_header(const std::string& path,
                                     const std::array<double, 3>& fallback_spacing);
Volume<float> read_h5_volume_image(const std::string& path, const H5VolumeHeader& header);
Volume<int32_t> read_h5_volume_labels(const std::string& path, const H5VolumeHeader& header);

}  // namespace cmaf::datastore
