// One test per class of bad input: each must give one clear InputError naming the file and the
// field, and leave no partial output: a new output folder is not created, an existing dataset
// being appended to is byte-for-byte unchanged.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "datastore/dataset_writer.h"
#include "datastore/nifti_volume.h"
#include "datastore/prep.h"
#include "datastore/volume_checks.h"
#include "tests/datastore/test_volumes.h"
#include "tests/temp_dir.h"

namespace cmaf::datastore {
namespace {
namespace fs = std::filesystem;

class PrepBadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_nnunet_folder(dir_.file("good"), 2, 3);
    run_prep(options(dir_.file("good"), existing()));  // a dataset that must survive
    existing_before_ = snapshot(existing());
    test::write_nnunet_folder(raw(), 3, 3);
  }

  static PrepOptions options(const std::string& input, const std::string& out) {
    PrepOptions o;
    o.input = input;
    o.out = out;
    o.site = fs::path(input).filename().string();
    o.case_prefix = fs::path(input).filename().string() + "_";
    return o;
  }

  std::string raw() const { return dir_.file("raw"); }
  std::string existing() const { return dir_.file("existing"); }
  std::string image(int i) const { return raw() + "/imagesTr/case_0" + std::to_string(i) + "_0000.nii.gz"; }
  std::string label(int i) const { return raw() + "/labelsTr/case_0" + std::to_string(i) + ".nii.gz"; }

  static std::map<std::string, std::string> snapshot(const std::string& folder) {
    std::map<std::string, std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(folder)) {
      files[e.path().string()] = e.is_regular_file() ? test::read_bytes(e.path().string()) : "<dir>";
    }
    return files;
  }

  // Runs prep into a new folder and appending to `existing`; both must fail the same way.
  void expect_rejected(const std::string& subject, const std::string& field,
                       const std::string& phrase, const std::string& input = "") {
    const std::string in = input.empty() ? raw() : input;
    for (const std::string& out : {dir_.file("fresh"), existing()}) {
      PrepOptions o = options(in, out);
      try {
        run_prep(o);
        ADD_FAILURE() << "prep into " << out << " accepted bad input (expected " << phrase << ")";
      } catch (const InputError& e) {
        EXPECT_EQ(e.subject(), subject) << e.what();
        EXPECT_EQ(e.field(), field) << e.what();
        EXPECT_NE(std::string(e.what()).find(phrase), std::string::npos) << e.what();
      }
    }
    EXPECT_FALSE(fs::exists(dir_.file("fresh"))) << "a failed prep left a new output folder";
    EXPECT_EQ(snapshot(existing()), existing_before_) << "a failed prep changed an existing dataset";
  }

  test::TempDir dir_;
  std::map<std::string, std::string> existing_before_;
};

TEST_F(PrepBadInput, TruncatedNiftiOfTheLastCase) {
  const std::string bytes = test::read_bytes(image(2));
  test::write_bytes(image(2), bytes.substr(0, bytes.size() * 2 / 3));
  expect_rejected(image(2), "data", "truncated");
}

TEST_F(PrepBadInput, CorruptNiftiHeader) {
  test::write_bytes(label(1), "this is not a NIfTI file");
  expect_rejected(label(1), "header", "not a readable NIfTI");
}

TEST_F(PrepBadInput, CorruptHdf5Volume) {
  fs::create_directories(dir_.file("h5"));
  const VolumeGeometry g = test::small_geometry(3, 8, 8);
  std::vector<float> image(192, 0.5f), label(192, 0.0f);
  image[0] = 0.0f;
  test::write_transunet_h5(dir_.file("h5/a.h5"), image, label, g);
  test::write_transunet_h5(dir_.file("h5/b.h5"), image, label, g);
  const std::string bytes = test::read_bytes(dir_.file("h5/b.h5"));
  test::write_bytes(dir_.file("h5/b.h5"), bytes.substr(0, 1000));
  for (const std::string& out : {dir_.file("fresh"), existing()}) {
    PrepOptions o = options(dir_.file("h5"), out);
    o.source_classes = 3;
    try {
      run_prep(o);
      ADD_FAILURE() << "truncated HDF5 accepted";
    } catch (const InputError& e) {
      EXPECT_EQ(e.subject(), dir_.file("h5/b.h5")) << e.what();
    }
  }
  EXPECT_FALSE(fs::exists(dir_.file("fresh")));
  EXPECT_EQ(snapshot(existing()), existing_before_);
}

TEST_F(PrepBadInput, ImageAndLabelShapesDiffer) {
  const VolumeGeometry g = test::small_geometry(7, 16, 15);
  const auto labels = test::box_labels(g, 3);
  write_nifti(label(1), g, labels.data());
  expect_rejected(label(1), "shape", "differs from the image");
}

TEST_F(PrepBadInput, ImageAndLabelGeometryDiffers) {
  VolumeGeometry g = read_nifti_header(label(1)).geometry;
  g.sform[3] += 5.0;  // label shifted 5 mm in x
  const auto labels = test::box_labels(g, 3);
  write_nifti(label(1), g, labels.data());
  expect_rejected(label(1), "affine", "differs from the image");
}

TEST_F(PrepBadInput, LabelOutsideTheDeclaredClasses) {
  const VolumeGeometry g = read_nifti_header(label(2)).geometry;
  auto labels = test::box_labels(g, 3);
  labels[5] = 7;
  write_nifti(label(2), g, labels.data());
  expect_rejected(label(2), "data", "label value 7 (1 voxels, first at z=0 y=0 x=5) is outside the declared classes 0..2");
}

TEST_F(PrepBadInput, NanIntensities) {
  const VolumeGeometry g = read_nifti_header(image(2)).geometry;
  std::vector<float> voxels(static_cast<size_t>(g.voxel_count()), 40.0f);
  voxels[3] = std::nanf("");
  voxels[4] = INFINITY;
  write_nifti(image(2), g, voxels.data());
  expect_rejected(image(2), "data", "2 voxels are NaN or Inf (first at z=0 y=0 x=3");
}

TEST_F(PrepBadInput, EmptyScan) {
  const VolumeGeometry g = read_nifti_header(image(2)).geometry;
  const std::vector<int16_t> blank(static_cast<size_t>(g.voxel_count()), -1024);
  write_nifti(image(2), g, blank.data());
  expect_rejected(image(2), "data", "the scan is empty");
}

// Not bad input, but worth a word: slices that hold one value are kept and counted (warned about
// per case), not rejected.
TEST_F(PrepBadInput, BlankSlicesAreKeptAndCounted) {
  const VolumeGeometry g = read_nifti_header(image(2)).geometry;
  std::vector<int16_t> voxels = test::ct_image(g);
  const auto plane = static_cast<size_t>(g.shape[1] * g.shape[2]);
  for (int64_t z : {int64_t{0}, g.shape[0] - 1}) {
    std::fill_n(voxels.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(z) * plane), plane, int16_t{-125});
  }
  write_nifti(image(2), g, voxels.data());
  std::vector<float> as_float(voxels.begin(), voxels.end());
  EXPECT_EQ(constant_slices(as_float, g), (std::vector<int64_t>{0, g.shape[0] - 1}));
  as_float[plane * static_cast<size_t>(g.shape[0] - 1) + 5] = 0.0f;  // one voxel differs: not blank
  EXPECT_EQ(constant_slices(as_float, g), (std::vector<int64_t>{0}));
  const PrepReport r = run_prep(options(raw(), dir_.file("out")));
  EXPECT_EQ(r.cases, 3);
  EXPECT_EQ(r.constant_slices, 2);
}

TEST_F(PrepBadInput, LabelFileMissing) {
  fs::remove(label(1));
  expect_rejected(label(1), "", "is missing: every case in imagesTr needs its label");
}

TEST_F(PrepBadInput, NumTrainingDisagreesWithTheFolder) {
  fs::remove(image(2));
  fs::remove(label(2));
  expect_rejected(raw() + "/dataset.json", "numTraining", "3, but imagesTr holds 2 cases");
}

TEST_F(PrepBadInput, FileNamedInDatasetJsonV1IsMissing) {
  nlohmann::json description;
  std::ifstream(raw() + "/dataset.json") >> description;
  description["training"] = {{{"image", "./imagesTr/case_00.nii.gz"}, {"label", "./labelsTr/case_00.nii.gz"}},
                             {{"image", "./imagesTr/case_09.nii.gz"}, {"label", "./labelsTr/case_09.nii.gz"}}};
  std::ofstream(raw() + "/dataset.json") << description.dump();
  expect_rejected(raw() + "/./imagesTr/case_09_0000.nii.gz", "",
                  "does not exist, but " + raw() + "/dataset.json training[1].image names it");
}

TEST_F(PrepBadInput, OutputFolderHoldsADifferentDataset) {
  PrepOptions o = options(raw(), existing());
  o.label_map = "2:1";  // 2 classes: not the existing dataset's 3
  try {
    run_prep(o);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.subject(), existing() + "/manifest.json");
    EXPECT_EQ(e.field(), "classes");
    EXPECT_NE(std::string(e.what()).find("already holds a different dataset"), std::string::npos);
  }
  EXPECT_EQ(snapshot(existing()), existing_before_);
}

TEST_F(PrepBadInput, OutputFolderIsNotADataset) {
  fs::create_directories(dir_.file("notes"));
  std::ofstream(dir_.file("notes/thesis.tex")) << "precious";
  try {
    run_prep(options(raw(), dir_.file("notes")));
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("has no manifest.json"), std::string::npos);
  }
  EXPECT_EQ(test::read_bytes(dir_.file("notes/thesis.tex")), "precious");
  EXPECT_EQ(snapshot(dir_.file("notes")).size(), 1u);
}

TEST_F(PrepBadInput, CaseIdAlreadyInTheDataset) {
  PrepOptions o = options(dir_.file("good"), existing());
  o.site = "other";
  try {
    run_prep(o);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "case id");
    EXPECT_NE(std::string(e.what()).find("--case-prefix"), std::string::npos);
  }
  EXPECT_EQ(snapshot(existing()), existing_before_);
}

TEST_F(PrepBadInput, ConcurrentWriterIsRefusedAndLeftoversOfAKilledRunAreCleared) {
  std::ofstream(existing() + "/cases/.tmp-99999-raw_case_00.h5") << "half a case";
  {
    DatasetWriter first(existing(), {"background", "organ1", "organ2"});
    EXPECT_FALSE(fs::exists(existing() + "/cases/.tmp-99999-raw_case_00.h5"));
    try {
      run_prep(options(raw(), existing()));
      FAIL() << "a second writer must be refused while the first holds the dataset";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("another cmaformer prep/synth is writing"),
                std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(snapshot(existing()), existing_before_);
  EXPECT_NO_THROW(run_prep(options(raw(), existing())));  // the lock is released
}

}  // namespace
}  // namespace cmaf::datastore
