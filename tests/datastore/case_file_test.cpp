#include "datastore/case_file.h"

#include <H5Cpp.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "common/error.h"
#include "tests/datastore/test_volumes.h"
#include "tests/temp_dir.h"

namespace cmaf::datastore {
namespace {

CaseMetadata metadata_for(const VolumeGeometry& g, LabelRole role) {
  CaseMetadata m;
  m.case_id = "c1";
  m.site = "hospital_a";
  m.geometry = g;
  m.source_image = "/src/c1_0000.nii.gz";
  m.source_label = "/src/c1.nii.gz";
  m.preprocessing = R"({"intensity":{"kind":"ct-window"}})";
  m.label_role = role;
  return m;
}

std::vector<float> ramp(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(i) / static_cast<float>(n);
  return v;
}

TEST(CaseFile, RoundTripOfVolumesSlicesAndAttributes) {
  test::TempDir dir;
  const std::string path = dir.file("c1.h5");
  const VolumeGeometry g = test::small_geometry(4, 6, 5);
  const auto image = ramp(static_cast<size_t>(g.voxel_count()));
  const auto label = test::box_labels(g, 3);
  write_case_file(path, metadata_for(g, LabelRole::kSupervision), image, label);

  const CaseFile file(path);
  EXPECT_EQ(file.metadata().case_id, "c1");
  EXPECT_EQ(file.metadata().site, "hospital_a");
  EXPECT_EQ(file.metadata().geometry.shape, g.shape);
  EXPECT_EQ(file.metadata().geometry.spacing, g.spacing);
  EXPECT_EQ(file.metadata().geometry.affine, g.affine);
  EXPECT_EQ(file.metadata().geometry.sform_code, 1);
  EXPECT_EQ(file.metadata().source_label, "/src/c1.nii.gz");
  EXPECT_EQ(file.metadata().preprocessing, R"({"intensity":{"kind":"ct-window"}})");
  EXPECT_EQ(file.read_image(), image);
  EXPECT_EQ(file.read_label(LabelUse::kTraining), label);

  std::vector<float> slice(30);
  file.read_image_slice(2, slice.data());
  EXPECT_TRUE(std::equal(slice.begin(), slice.end(), image.begin() + 60));
  std::vector<uint8_t> label_slice(30);
  file.read_label_slice(3, LabelUse::kEvaluation, label_slice.data());
  EXPECT_TRUE(std::equal(label_slice.begin(), label_slice.end(), label.begin() + 90));
  EXPECT_THROW(file.read_image_slice(4, slice.data()), InputError);
}

TEST(CaseFile, LayoutIsSliceChunkedShuffledGzip1AsDocumented) {
  test::TempDir dir;
  const std::string path = dir.file("c1.h5");
  const VolumeGeometry g = test::small_geometry(3, 8, 7);
  write_case_file(path, metadata_for(g, LabelRole::kSupervision), ramp(168), test::box_labels(g, 2));
  H5::H5File file(path, H5F_ACC_RDONLY);
  for (const char* name : {"image", "label"}) {
    const H5::DSetCreatPropList properties = file.openDataSet(name).getCreatePlist();
    hsize_t chunk[3] = {0, 0, 0};
    ASSERT_EQ(properties.getChunk(3, chunk), 3);
    EXPECT_EQ(chunk[0], 1u);
    EXPECT_EQ(chunk[1], 8u);
    EXPECT_EQ(chunk[2], 7u);
    ASSERT_EQ(properties.getNfilters(), 2);
    unsigned flags = 0;
    size_t nelmts = 1;
    unsigned level = 0;
    char filter_name[64];
    unsigned config = 0;
    EXPECT_EQ(properties.getFilter(0, flags, nelmts, &level, sizeof(filter_name), filter_name, config),
              H5Z_FILTER_SHUFFLE);
    nelmts = 1;
    EXPECT_EQ(properties.getFilter(1, flags, nelmts, &level, sizeof(filter_name), filter_name, config),
              H5Z_FILTER_DEFLATE);
    EXPECT_EQ(level, 1u);
  }
  EXPECT_EQ(file.openDataSet("image").getDataType(), H5::PredType::IEEE_F32LE);
  EXPECT_EQ(file.openDataSet("label").getDataType(), H5::PredType::STD_U8LE);
}

TEST(CaseFile, EvaluationOnlyLabelIsRefusedToTraining) {
  test::TempDir dir;
  const std::string path = dir.file("c1.h5");
  const VolumeGeometry g = test::small_geometry(2, 4, 4);
  write_case_file(path, metadata_for(g, LabelRole::kEvaluationOnly), ramp(32), test::box_labels(g, 2));
  const CaseFile file(path);
  EXPECT_NO_THROW(file.read_label(LabelUse::kEvaluation));
  try {
    file.read_label(LabelUse::kTraining);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("evaluation only"), std::string::npos) << e.what();
  }
}

TEST(CaseFile, UnlabeledCaseHasNoLabelDataset) {
  test::TempDir dir;
  const std::string path = dir.file("c1.h5");
  const VolumeGeometry g = test::small_geometry(2, 4, 4);
  write_case_file(path, metadata_for(g, LabelRole::kNone), ramp(32), {});
  const CaseFile file(path);
  EXPECT_FALSE(file.has_label());
  EXPECT_THROW(file.read_label(LabelUse::kEvaluation), InputError);
  H5::H5File raw(path, H5F_ACC_RDONLY);
  EXPECT_FALSE(raw.nameExists("label"));
}

TEST(CaseFileErrors, TruncatedFileIsAnInputErrorNamingTheFile) {
  test::TempDir dir;
  const std::string path = dir.file("c1.h5");
  const VolumeGeometry g = test::small_geometry(6, 32, 32);
  write_case_file(path, metadata_for(g, LabelRole::kSupervision),
                  ramp(static_cast<size_t>(g.voxel_count())), test::box_labels(g, 3));
  const std::string bytes = test::read_bytes(path);
  test::write_bytes(path, bytes.substr(0, bytes.size() / 3));
  try {
    const CaseFile file(path);
    file.read_image();
    FAIL() << "a truncated case must not read";
  } catch (const InputError& e) {
    EXPECT_EQ(e.subject(), path);
  }
}

TEST(CaseFileErrors, NonHdf5FileAndMissingImageAreNamed) {
  test::TempDir dir;
  const std::string garbage = dir.file("garbage.h5");
  test::write_bytes(garbage, "not an hdf5 file at all");
  try {
    CaseFile file(garbage);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("not an HDF5 file"), std::string::npos) << e.what();
  }
  const std::string empty = dir.file("empty.h5");
  H5::H5File(empty, H5F_ACC_TRUNC).close();
  try {
    CaseFile file(empty);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("format_version"), std::string::npos) << e.what();
  }
}

TEST(CaseFileErrors, FailedWriteLeavesNoFile) {
  test::TempDir dir;
  const std::string path = dir.file("missing_folder/c1.h5");
  const VolumeGeometry g = test::small_geometry(2, 4, 4);
  EXPECT_THROW(write_case_file(path, metadata_for(g, LabelRole::kNone), ramp(32), {}), IoError);
  EXPECT_TRUE(dir.entries().empty());
}

}  // namespace
}  // namespace cmaf::datastore
