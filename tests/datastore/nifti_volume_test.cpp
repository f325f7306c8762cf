#include "datastore/nifti_volume.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "tests/datastore/test_volumes.h"
#include "tests/temp_dir.h"

namespace cmaf::datastore {
namespace {

class NiftiVolume : public ::testing::TestWithParam<const char*> {};

TEST_P(NiftiVolume, RoundTripKeepsVoxelsShapeSpacingAndAffine) {
  test::TempDir dir;
  const std::string path = dir.file(std::string("scan") + GetParam());
  const VolumeGeometry g = test::small_geometry(5, 12, 10);  // D != H != W catches axis swaps
  const std::vector<int16_t> voxels = test::ct_image(g);
  write_nifti(path, g, voxels.data());

  const NiftiHeader header = read_nifti_header(path);
  EXPECT_EQ(header.geometry.shape, g.shape);
  EXPECT_EQ(header.datatype, "INT16");
  EXPECT_TRUE(header.integer_type);
  const Volume<float> image = read_nifti_image(path);
  EXPECT_EQ(image.geometry.shape, (std::array<int64_t, 3>{5, 12, 10}));
  EXPECT_NEAR(image.geometry.spacing[0], 3.0, 1e-6);
  EXPECT_NEAR(image.geometry.spacing[2], 0.8, 1e-6);
  EXPECT_LT(affine_max_difference(image.geometry.affine, g.affine), 1e-4);
  ASSERT_EQ(image.voxels.size(), voxels.size());
  for (size_t i = 0; i < voxels.size(); ++i) ASSERT_EQ(image.voxels[i], voxels[i]) << i;
  // Element [d][h][w] is NIfTI voxel (i=w, j=h, k=d): W is the fastest axis.
  EXPECT_EQ(image.voxels[1], voxels[1]);
}

INSTANTIATE_TEST_SUITE_P(Extensions, NiftiVolume, ::testing::Values(".nii", ".nii.gz"));

TEST(NiftiVolumeErrors, TruncatedCompressedFileNamesTheDataBlock) {
  test::TempDir dir;
  const std::string path = dir.file("scan.nii.gz");
  const VolumeGeometry g = test::small_geometry(8, 32, 32);
  const auto voxels = test::ct_image(g);
  write_nifti(path, g, voxels.data());
  const std::string bytes = test::read_bytes(path);
  test::write_bytes(path, bytes.substr(0, bytes.size() / 2));
  EXPECT_NO_THROW(read_nifti_header(path));  // the header survives, the data do not
  try {
    read_nifti_image(path);
    FAIL() << "a truncated file must not read";
  } catch (const InputError& e) {
    EXPECT_EQ(e.subject(), path);
    EXPECT_EQ(e.field(), "data");
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
}

TEST(NiftiVolumeErrors, GarbageFileIsNotANiftiHeader) {
  test::TempDir dir;
  const std::string path = dir.file("scan.nii");
  test::write_bytes(path, std::string(100, 'x'));
  try {
    read_nifti_header(path);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "header");
  }
}

TEST(NiftiVolumeErrors, MissingFileIsNamed) {
  try {
    read_nifti_image("/nonexistent/x.nii.gz");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.nii.gz: file does not exist"),
              std::string::npos);
  }
}

TEST(NiftiVolumeErrors, NonIntegralLabelValueIsRefusedWithItsVoxel) {
  test::TempDir dir;
  const std::string path = dir.file("label.nii.gz");
  const VolumeGeometry g = test::small_geometry(2, 4, 4);
  std::vector<float> values(static_cast<size_t>(g.voxel_count()), 1.0f);
  values[21] = 2.5f;  // z=1 y=1 x=1
  write_nifti(path, g, values.data());
  try {
    read_nifti_labels(path);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("value 2.5 at z=1 y=1 x=1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cmaf::datastore
