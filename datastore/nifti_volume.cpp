#include "datastore/nifti_volume.h"

#include <nifti2_io.h>
#include <znzlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>

#include "common/atomic_file.h"
#include "common/error.h"
#include "datastore/volume_checks.h"

namespace cmaf::datastore {
namespace {

struct NiftiDeleter {
  void operator()(nifti_image* image) const { nifti_image_free(image); }
};
using NiftiPtr = std::unique_ptr<nifti_image, NiftiDeleter>;

Matrix4 to_matrix4(const nifti_dmat44& m) {
  Matrix4 out{};
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) out[r * 4 + c] = m.m[r][c];
  return out;
}

nifti_dmat44 to_dmat44(const Matrix4& m) {
  nifti_dmat44 out{};
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) out.m[r][c] = m[r * 4 + c];
  return out;
}

// Reads the voxel block ourselves: nifti_image_load silently replaces NaN/Inf floats by 0,
// which would hide exactly the corruption prep must report.
void load_voxels(nifti_image& image, const std::string& path) {
  const auto bytes = static_cast<size_t>(image.nvox) * static_cast<size_t>(image.nbyper);
  auto fail = [&](const std::string& what) {
    throw InputError(path, "data",
                     str(what, ": expected ", image.nvox, " voxels of ",
                         nifti_datatype_string(image.datatype), " (", bytes,
                         " bytes); the file is truncated or corrupt"));
  };
  znzFile file = znzopen(image.iname, "rb", nifti_is_gzfile(image.iname));
  if (znz_isnull(file)) fail("cannot open the voxel data");
  void* buffer = std::malloc(bytes);
  if (buffer == nullptr) {
    znzclose(file);
    throw IoError(str(path, ": out of memory for ", bytes, " bytes of voxel data"));
  }
  const bool positioned = znzseek(file, static_cast<znz_off_t>(image.iname_offset), SEEK_SET) >= 0;
  const size_t got = positioned ? znzread(buffer, 1, bytes, file) : 0;
  znzclose(file);
  if (got != bytes) {
    std::free(buffer);
    fail(str("voxel data could not be read (", got, " of ", bytes, " bytes)"));
  }
  if (image.swapsize > 1 && image.byteorder != nifti_short_order()) {
    nifti_swap_Nbytes(image.nvox, image.swapsize, buffer);
  }
  image.data = buffer;  // freed by nifti_image_free
}

NiftiPtr open_nifti(const std::string& path, bool read_data) {
  if (!std::filesystem::exists(path)) throw InputError(path, "", "file does not exist");
  nifti_set_debug_level(0);
  NiftiPtr image(nifti_image_read(path.c_str(), 0));
  if (!image) {
    throw InputError(path, "header",
                     "not a readable NIfTI-1/NIfTI-2 file (truncated, corrupt, or another format)");
  }
  if (image->ndim < 3 || image->nx < 1 || image->ny < 1 || image->nz < 1) {
    throw InputError(path, "dim",
                     str("volume is empty or not 3-D (ndim ", image->ndim, ", ", image->nx, "x",
                         image->ny, "x", image->nz, "), expected a 3-D volume with every size >= 1"));
  }
  const int64_t extra = image->nvox / (image->nx * image->ny * image->nz);
  if (extra != 1) {
    throw InputError(path, "dim",
                     str("has ", extra, " volumes (ndim ", image->ndim,
                         "), expected a single 3-D volume"));
  }
  if (read_data) load_voxels(*image, path);
  return image;
}

VolumeGeometry geometry_of(const nifti_image& image, const std::string& path) {
  VolumeGeometry geometry;
  geometry.shape = {image.nz, image.ny, image.nx};
  geometry.spacing = {std::abs(image.dz), std::abs(image.dy), std::abs(image.dx)};
  for (double s : geometry.spacing) {
    if (!(s > 0.0) || !std::isfinite(s)) {
      throw InputError(path, "pixdim",
                       str("voxel spacing ", geometry.spacing_string(),
                           " mm is not positive and finite, expected spacings > 0"));
    }
  }
  geometry.qform_code = image.qform_code;
  geometry.sform_code = image.sform_code;
  geometry.qform = to_matrix4(image.qto_xyz);
  geometry.sform = to_matrix4(image.sto_xyz);
  if (image.sform_code > 0) {
    geometry.affine = geometry.sform;
  } else if (image.qform_code > 0) {
    geometry.affine = geometry.qform;
  } else {
    geometry.affine = geometry_from_spacing(geometry.shape, geometry.spacing).affine;
  }
  return geometry;
}

bool is_integer_type(int datatype) {
  switch (datatype) {
    case DT_UINT8: case DT_INT8: case DT_INT16: case DT_UINT16:
    case DT_INT32: case DT_UINT32: case DT_INT64: case DT_UINT64:
      return true;
    default:
      return false;
  }
}

// Converts the raw buffer to T with scaling; throws for complex/RGB and other non-scalar types.
template <typename T>
std::vector<T> convert_voxels(const nifti_image& image, const std::string& path) {
  const auto n = static_cast<size_t>(image.nvox);
  std::vector<T> out(n);
  const bool scaled = image.scl_slope != 0.0 && (image.scl_slope != 1.0 || image.scl_inter != 0.0);
  auto copy = [&](const auto* src) {
    for (size_t i = 0; i < n; ++i) {
      double v = static_cast<double>(src[i]);
      if (scaled) v = v * image.scl_slope + image.scl_inter;
      out[i] = static_cast<T>(v);
    }
  };
  const void* data = image.data;
  switch (image.datatype) {
    case DT_UINT8: copy(static_cast<const uint8_t*>(data)); break;
    case DT_INT8: copy(static_cast<const int8_t*>(data)); break;
    case DT_INT16: copy(static_cast<const int16_t*>(data)); break;
    case DT_UINT16: copy(static_cast<const uint16_t*>(data)); break;
    case DT_INT32: copy(static_cast<const int32_t*>(data)); break;
    case DT_UINT32: copy(static_cast<const uint32_t*>(data)); break;
    case DT_INT64: copy(static_cast<const int64_t*>(data)); break;
    case DT_UINT64: copy(static_cast<const uint64_t*>(data)); break;
    case DT_FLOAT32: copy(static_cast<const float*>(data)); break;
    case DT_FLOAT64: copy(static_cast<const double*>(data)); break;
    default:
      throw InputError(path, "datatype",
                       str(nifti_datatype_string(image.datatype),
                           " is not supported, expected a real scalar type (integer or float)"));
  }
  return out;
}

template <typename T>
void write_nifti_typed(const std::string& path, const VolumeGeometry& geometry, const T* voxels,
                       int datatype) {
  const int64_t dims[8] = {3, geometry.shape[2], geometry.shape[1], geometry.shape[0], 1, 1, 1, 1};
  nifti_set_debug_level(0);
  NiftiPtr image(nifti_make_new_nim(dims, datatype, 0));
  if (!image) throw IoError(str(path, ": nifti_make_new_nim failed for ", geometry.shape_string()));
  image->dx = image->pixdim[1] = geometry.spacing[2];
  image->dy = image->pixdim[2] = geometry.spacing[1];
  image->dz = image->pixdim[3] = geometry.spacing[0];
  image->xyz_units = NIFTI_UNITS_MM;
  image->qform_code = geometry.qform_code;
  image->sform_code = geometry.sform_code;
  image->qto_xyz = to_dmat44(geometry.qform);
  image->sto_xyz = to_dmat44(geometry.sform);
  if (geometry.qform_code > 0) {
    double qfac = 1.0;
    nifti_dmat44_to_quatern(image->qto_xyz, &image->quatern_b, &image->quatern_c,
                            &image->quatern_d, &image->qoffset_x, &image->qoffset_y,
                            &image->qoffset_z, nullptr, nullptr, nullptr, &qfac);
    image->qfac = qfac;
  }
  // nifticlib owns `data` and frees it with the image: give it its own copy.
  const size_t bytes = static_cast<size_t>(geometry.voxel_count()) * sizeof(T);
  image->data = std::malloc(bytes);
  if (image->data == nullptr) throw IoError(str(path, ": out of memory for ", bytes, " bytes"));
  std::memcpy(image->data, voxels, bytes);

  AtomicFile file(path);
  if (nifti_set_filenames(image.get(), file.temp_path().c_str(), 0, 1) != 0) {
    throw InputError(path, "file name", "expected a name ending in .nii or .nii.gz");
  }
  nifti_image_write(image.get());  // returns nothing: verify by reading the header back
  NiftiPtr check(nifti_image_read(file.temp_path().c_str(), 0));
  if (!check || check->nvox != geometry.voxel_count()) {
    throw IoError(str(path, ": writing the NIfTI file failed (disk full or folder not writable?)"));
  }
  file.commit();
}

}  // namespace

NiftiHeader read_nifti_header(const std::string& path) {
  NiftiPtr image = open_nifti(path, false);
  NiftiHeader header;
  header.geometry = geometry_of(*image, path);
  header.datatype = nifti_datatype_string(image->datatype);
  header.integer_type = is_integer_type(image->datatype);
  return header;
}

Volume<float> read_nifti_image(const std::string& path) {
  NiftiPtr image = open_nifti(path, true);
  Volume<float> volume;
  volume.geometry = geometry_of(*image, path);
  volume.voxels = convert_voxels<float>(*image, path);
  return volume;
}

Volume<int32_t> read_nifti_labels(const std::string& path) {
  NiftiPtr image = open_nifti(path, true);
  Volume<int32_t> volume;
  volume.geometry = geometry_of(*image, path);
  volume.voxels = to_label_ids(convert_voxels<double>(*image, path), volume.geometry, path);
  return volume;
}

void write_nifti(const std::string& path, const VolumeGeometry& geometry, const float* voxels) {
  write_nifti_typed(path, geometry, voxels, DT_FLOAT32);
}
void write_nifti(const std::string& path, const VolumeGeometry& geometry, const uint8_t* voxels) {
  write_nifti_typed(path, geometry, voxels, DT_UINT8);
}
void write_nifti(const std::string& path, const VolumeGeometry& geometry, const int16_t* voxels) {
  write_nifti_typed(path, geometry, voxels, DT_INT16);
}

}  // namespace cmaf::datastore
