#include "datastore/h5_volume_source.h"

#include <cmath>

#include "common/error.h"
#include "datastore/case_file.h"
#include "datastore/h5_util.h"
#include "datastore/volume_checks.h"

namespace cmaf::datastore {
namespace {

template <typename T>
std::vector<T> read_whole(const std::string& path, const char* name, const H5VolumeHeader& header,
                          const H5::PredType& type, H5T_class_t expected_a, H5T_class_t expected_b) {
  std::vector<T> out(static_cast<size_t>(header.geometry.voxel_count()));
  const H5::H5File file = h5::open_read_only(path);
  h5::guarded(path, str("dataset '", name, "'"), "reading", [&] {
    H5::DataSet dataset = file.openDataSet(name);
    const H5T_class_t type_class = dataset.getTypeClass();
    if (type_class != expected_a && type_class != expected_b) {
      throw InputError(path, str("dataset '", name, "'"),
                       str("has HDF5 type class ", static_cast<int>(type_class),
                           ", expected integer or floating-point numbers"));
    }
    dataset.read(out.data(), type);
  });
  return out;
}

}  // namespace

H5VolumeHeader read_h5_volume_header(const std::string& path,
                                     const std::array<double, 3>& fallback_spacing) {
  const H5::H5File file = h5::open_read_only(path);
  H5VolumeHeader header;
  h5::guarded(path, "", "reading the layout", [&] {
    if (!file.nameExists(kImageDataset)) {
      throw InputError(path, "dataset 'image'", "missing, expected a D x H x W volume");
    }
    const auto dims = h5::dims3(file.openDataSet(kImageDataset), kImageDataset, path);
    std::array<int64_t, 3> shape{};
    for (int axis = 0; axis < 3; ++axis) shape[axis] = static_cast<int64_t>(dims[axis]);
    if (shape[0] * shape[1] * shape[2] == 0) {
      throw InputError(path, "dataset 'image'",
                       str("is empty (", shape[0], "x", shape[1], "x", shape[2],
                           "), expected every size >= 1"));
    }
    header.has_label = file.nameExists(kLabelDataset);
    if (header.has_label) {
      const auto label_dims = h5::dims3(file.openDataSet(kLabelDataset), kLabelDataset, path);
      if (label_dims != dims) {
        throw InputError(path, "dataset 'label'",
                         str("shape ", label_dims[0], "x", label_dims[1], "x", label_dims[2],
                             " differs from image ", shape[0], "x", shape[1], "x", shape[2]));
      }
    }
    std::array<double, 3> spacing = fallback_spacing;
    header.spacing_from_file = h5::has_attribute(file, "spacing");
    if (header.spacing_from_file) {
      const std::vector<double> stored = h5::read_doubles(file, "spacing", 3, path);
      std::copy(stored.begin(), stored.end(), spacing.begin());
    }
    for (double s : spacing) {
      if (!(s > 0.0) || !std::isfinite(s)) {
        throw InputError(path, "attribute 'spacing'", "expected three spacings > 0 (z, y, x mm)");
      }
    }
    header.geometry = geometry_from_spacing(shape, spacing);
    if (h5::has_attribute(file, "affine")) {
      const std::vector<double> affine = h5::read_doubles(file, "affine", 16, path);
      std::copy(affine.begin(), affine.end(), header.geometry.affine.begin());
    }
  });
  return header;
}

Volume<float> read_h5_volume_image(const std::string& path, const H5VolumeHeader& header) {
  return {header.geometry, read_whole<float>(path, kImageDataset, header, H5::PredType::NATIVE_FLOAT,
                                             H5T_FLOAT, H5T_INTEGER)};
}

Volume<int32_t> read_h5_volume_labels(const std::string& path, const H5VolumeHeader& header) {
  // TransUNet stores labels as float32: read any real type, then insist on integral ids.
  const std::vector<double> values = read_whole<double>(path, kLabelDataset, header,
                                                        H5::PredType::NATIVE_DOUBLE, H5T_INTEGER, H5T_FLOAT);
  return {header.geometry, to_label_ids(values, header.geometry, path)};
}

}  // namespace cmaf::datastore
