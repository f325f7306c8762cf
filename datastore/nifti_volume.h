// NIfTI-1/NIfTI-2 volumes (.nii and .nii.gz) through nifticlib.
//
// Readers accept any real scalar datatype, apply scl_slope/scl_inter, and return (D, H, W)
// buffers (see volume.h). Every failure is an InputError naming the file and the header field
// or the data block that is wrong; nifticlib's own stderr chatter is silenced.
#pragma once

#include <cstdint>
#include <string>

#include "datastore/volume.h"

namespace cmaf::datastore {

struct NiftiHeader {
  VolumeGeometry geometry;
  std::string datatype;  // nifticlib's name, e.g. "INT16"
  bool integer_type = false;
};

// Header only: cheap, used to validate a whole input folder before converting anything.
NiftiHeader read_nifti_header(const std::string& path);

// Intensities as float (after scl_slope / scl_inter).
Volume<float> read_nifti_image(const std::string& path);

// Label ids as int32. Non-integral stored values are an InputError naming the voxel.
Volume<int32_t> read_nifti_labels(const std::string& path);

// Writes a volume with the geometry's qform/sform (compressed when `path` ends in .gz).
void write_nifti(const std::string& path, const VolumeGeometry& geometry, const float* voxels);
void write_nifti(const std::string& path, const VolumeGeometry& geometry, const uint8_t* voxels);
void write_nifti(const std::string& path, const VolumeGeometry& geometry, const int16_t* voxels);

}  // namespace cmaf::datastore
