#include "tests/datastore/test_volumes.h"

#include <H5Cpp.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "datastore/nifti_volume.h"

namespace cmaf::test {
namespace fs = std::filesystem;

datastore::VolumeGeometry small_geometry(int64_t d, int64_t h, int64_t w) {
  datastore::VolumeGeometry g = datastore::geometry_from_spacing({d, h, w}, {3.0, 0.8, 0.8});
  g.affine[3] = -100.0;  // x origin
  g.affine[7] = 50.0;    // y origin
  g.affine[11] = 20.0;   // z origin
  g.qform = g.affine;
  g.sform = g.affine;
  g.sform_code = 1;
  return g;
}

std::vector<int16_t> ct_image(const datastore::VolumeGeometry& g) {
  std::vector<int16_t> v(static_cast<size_t>(g.voxel_count()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int16_t>(-300 + static_cast<int>(i % 701));
  return v;
}

std::vector<uint8_t> box_labels(const datastore::VolumeGeometry& g, int classes) {
  const auto& s = g.shape;
  std::vector<uint8_t> v(static_cast<size_t>(g.voxel_count()), 0);
  for (int c = 1; c < classes; ++c) {
    const int64_t half = std::max<int64_t>(1, s[2] / (2 * c) - 1);
    for (int64_t z = 0; z < s[0] - 1; ++z)
      for (int64_t y = 0; y < 2 * half && y < s[1]; ++y)
        for (int64_t x = 0; x < half && x < s[2]; ++x)
          v[static_cast<size_t>((z * s[1] + y) * s[2] + x)] = static_cast<uint8_t>(c);
  }
  return v;
}

void write_nnunet_folder(const std::string& root, int cases, int classes, int64_t slices,
                         int64_t size) {
  fs::create_directories(fs::path(root) / "imagesTr");
  fs::create_directories(fs::path(root) / "labelsTr");
  nlohmann::json labels;
  labels["background"] = 0;
  for (int c = 1; c < classes; ++c) labels["organ" + std::to_string(c)] = c;
  const nlohmann::json description = {{"channel_names", {{"0", "CT"}}},
                                      {"labels", labels},
                                      {"numTraining", cases},
                                      {"file_ending", ".nii.gz"}};
  std::ofstream(fs::path(root) / "dataset.json") << description.dump(2);
  for (int i = 0; i < cases; ++i) {
    char id[16];
    std::snprintf(id, sizeof(id), "case_%02d", i);
    const auto g = small_geometry(slices + i, size, size);
    const auto image = ct_image(g);
    const auto label = box_labels(g, classes);
    datastore::write_nifti((fs::path(root) / "imagesTr" / (std::string(id) + "_0000.nii.gz")).string(),
                           g, image.data());
    datastore::write_nifti((fs::path(root) / "labelsTr" / (std::string(id) + ".nii.gz")).string(), g,
                           label.data());
  }
}

void write_transunet_h5(const std::string& path, const std::vector<float>& image,
                        const std::vector<float>& label, const datastore::VolumeGeometry& g) {
  H5::H5File file(path, H5F_ACC_TRUNC);
  const hsize_t dims[3] = {static_cast<hsize_t>(g.shape[0]), static_cast<hsize_t>(g.shape[1]),
                           static_cast<hsize_t>(g.shape[2])};
  H5::DataSpace space(3, dims);
  file.createDataSet("image", H5::PredType::IEEE_F32LE, space).write(image.data(), H5::PredType::NATIVE_FLOAT);
  if (!label.empty()) {
    file.createDataSet("label", H5::PredType::IEEE_F32LE, space).write(label.data(), H5::PredType::NATIVE_FLOAT);
  }
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

}  // namespace cmaf::test
