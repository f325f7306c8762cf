#include "datastore/prep.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "common/error.h"
#include "datastore/case_file.h"
#include "datastore/inspect.h"
#include "datastore/manifest.h"
#include "datastore/nifti_volume.h"
#include "tests/datastore/test_volumes.h"
#include "tests/temp_dir.h"

namespace cmaf::datastore {
namespace {
namespace fs = std::filesystem;

PrepOptions options_for(const std::string& input, const std::string& out) {
  PrepOptions o;
  o.input = input;
  o.out = out;
  return o;
}

TEST(Prep, NnunetFolderBecomesADatasetWithMatchingSlicesAndVoxelCounts) {
  test::TempDir dir;
  const std::string src = dir.file("raw");
  test::write_nnunet_folder(src, 4, 3);
  PrepOptions o = options_for(src, dir.file("ds"));
  o.splits.test = parse_case_selection("1", "--test-cases");
  o.splits.labeled = parse_case_selection("1", "--labeled-cases");
  const PrepReport report = run_prep(o);
  EXPECT_EQ(report.cases, 4);
  EXPECT_EQ(report.slices, 6 + 7 + 8 + 9);

  const DatasetManifest m = load_manifest(o.out);
  EXPECT_EQ(m.classes, (std::vector<std::string>{"background", "organ1", "organ2"}));
  ASSERT_EQ(m.cases.size(), 4u);
  int test_cases = 0, labeled = 0;
  for (const ManifestCase& c : m.cases) {
    test_cases += c.split == Split::kTest;
    labeled += c.labeled;
    // Independent recount from the source label volume.
    const Volume<int32_t> source = read_nifti_labels(src + "/labelsTr/" + c.id + ".nii.gz");
    std::vector<int64_t> counts(3, 0);
    for (int32_t v : source.voxels) ++counts[static_cast<size_t>(v)];
    EXPECT_EQ(c.class_voxels, counts) << c.id;
    EXPECT_EQ(c.slices(), source.geometry.shape[0]);
    EXPECT_EQ(c.class_slices[1], c.slices() - 1);  // box_labels leaves the last slice empty

    const CaseFile file(o.out + "/" + c.file);
    EXPECT_EQ(file.metadata().geometry.affine, source.geometry.affine);
    const std::vector<float> image = file.read_image();
    EXPECT_FLOAT_EQ(*std::min_element(image.begin(), image.end()), 0.0f);  // -300 HU clipped
    EXPECT_FLOAT_EQ(*std::max_element(image.begin(), image.end()), 1.0f);  // 400 HU clipped
    EXPECT_FLOAT_EQ(image[125], 0.0f);  // -175 HU, below the window
    EXPECT_FLOAT_EQ(image[375], 0.5f);  // 75 HU: (75 + 125) / 400
  }
  EXPECT_EQ(test_cases, 1);
  EXPECT_EQ(labeled, 1);
  EXPECT_TRUE(inspect_dataset(o.out, {true, true}).problems.empty());
}

TEST(Prep, LabelMapIsAppliedAndRecorded) {
  test::TempDir dir;
  test::write_nnunet_folder(dir.file("raw"), 2, 4);
  PrepOptions o = options_for(dir.file("raw"), dir.file("ds"));
  o.label_map = "3:1,1:2";
  o.class_names = "background,small,large";
  run_prep(o);
  const DatasetManifest m = load_manifest(o.out);
  EXPECT_EQ(m.classes, (std::vector<std::string>{"background", "small", "large"}));
  const Volume<int32_t> source = read_nifti_labels(dir.file("raw/labelsTr/case_00.nii.gz"));
  const auto label = CaseFile(o.out + "/cases/case_00.h5").read_label(LabelUse::kEvaluation);
  for (size_t i = 0; i < label.size(); ++i) {
    const int expected = source.voxels[i] == 3 ? 1 : (source.voxels[i] == 1 ? 2 : 0);
    ASSERT_EQ(label[i], expected) << i;
  }
  EXPECT_EQ(m.sites.at(0).preprocessing["label_map"]["spec"], "3:1,1:2");
}

TEST(Prep, VerifySourcesNoticesASourceThatNoLongerMatches) {
  test::TempDir dir;
  test::write_nnunet_folder(dir.file("raw"), 2, 3);
  PrepOptions o = options_for(dir.file("raw"), dir.file("ds"));
  run_prep(o);
  EXPECT_TRUE(inspect_dataset(o.out, {false, true}).problems.empty());
  const std::string label_path = dir.file("raw/labelsTr/case_01.nii.gz");
  const Volume<int32_t> source = read_nifti_labels(label_path);
  std::vector<uint8_t> edited(source.voxels.begin(), source.voxels.end());
  edited[edited.size() - 1] = 2;
  write_nifti(label_path, source.geometry, edited.data());
  const InspectReport report = inspect_dataset(o.out, {false, true});
  ASSERT_EQ(report.problems.size(), 1u);
  EXPECT_NE(report.problems[0].find("class voxel counts differ from source " + label_path),
            std::string::npos) << report.problems[0];
}

TEST(Prep, SecondSiteAppendsAndKeepsTheFirst) {
  test::TempDir dir;
  test::write_nnunet_folder(dir.file("a"), 2, 3);
  test::write_nnunet_folder(dir.file("b"), 3, 3);
  PrepOptions a = options_for(dir.file("a"), dir.file("ds"));
  a.site = "hospital_a";
  run_prep(a);
  PrepOptions b = options_for(dir.file("b"), dir.file("ds"));
  b.site = "hospital_b";
  b.case_prefix = "b_";
  run_prep(b);
  const DatasetManifest m = load_manifest(dir.file("ds"));
  EXPECT_EQ(m.sites.size(), 2u);
  EXPECT_EQ(m.cases.size(), 5u);
  ASSERT_NE(m.find_case("b_case_02"), nullptr);
  EXPECT_EQ(m.find_case("b_case_02")->site, "hospital_b");
  EXPECT_EQ(m.find_case("case_00")->site, "hospital_a");
  EXPECT_TRUE(inspect_dataset(dir.file("ds"), {false, true}).problems.empty());
}

TEST(Prep, ImagesTsBecomeTestCasesWithoutLabelOrUnlabeledTrain) {
  test::TempDir dir;
  const std::string src = dir.file("raw");
  test::write_nnunet_folder(src, 2, 3);
  fs::create_directories(src + "/imagesTs");
  fs::copy_file(src + "/imagesTr/case_00_0000.nii.gz", src + "/imagesTs/extra_0000.nii.gz");
  PrepOptions o = options_for(src, dir.file("ds"));
  run_prep(o);
  const ManifestCase* extra = load_manifest(o.out).find_case("extra");
  ASSERT_NE(extra, nullptr);
  EXPECT_EQ(extra->split, Split::kTest);
  EXPECT_FALSE(extra->has_label);

  o.out = dir.file("ds2");
  o.images_ts = "unlabeled";
  run_prep(o);
  const DatasetManifest m2 = load_manifest(o.out);
  EXPECT_EQ(m2.find_case("extra")->split, Split::kTrain);
  EXPECT_FALSE(m2.find_case("extra")->labeled);
}

TEST(Prep, TransUNetH5VolumesAreRead) {
  test::TempDir dir;
  fs::create_directories(dir.file("h5"));
  const VolumeGeometry g = test::small_geometry(3, 8, 8);
  std::vector<float> image(192), label(192, 0.0f);
  for (size_t i = 0; i < image.size(); ++i) image[i] = static_cast<float>(i) / 192.0f;
  label[10] = 8.0f;
  test::write_transunet_h5(dir.file("h5/case0001.npy.h5"), image, label, g);
  PrepOptions o = options_for(dir.file("h5"), dir.file("ds"));
  o.source_classes = 9;
  o.spacing = {2.5, 0.7, 0.7};
  run_prep(o);
  const DatasetManifest m = load_manifest(o.out);
  ASSERT_EQ(m.cases.size(), 1u);
  EXPECT_EQ(m.cases[0].id, "case0001");
  EXPECT_EQ(m.cases[0].class_voxels[8], 1);
  EXPECT_EQ(m.cases[0].spacing, (std::array<double, 3>{2.5, 0.7, 0.7}));
  EXPECT_EQ(CaseFile(o.out + "/cases/case0001.h5").read_image(), image);  // normalisation none
}

TEST(Prep, ShardsOfAJobArrayMergeIntoTheDatasetOfOneRun) {
  test::TempDir dir;
  const std::string src = dir.file("raw");
  test::write_nnunet_folder(src, 7, 3);
  PrepOptions whole = options_for(src, dir.file("whole"));
  whole.splits.test = parse_case_selection("2", "--test-cases");
  whole.splits.labeled = parse_case_selection("2", "--labeled-cases");
  whole.splits.seed = 3;
  run_prep(whole);
  std::vector<std::string> parts;
  for (int i = 0; i < 3; ++i) {
    PrepOptions part = whole;
    part.out = dir.file("part" + std::to_string(i));
    part.shard_index = i;
    part.shard_count = 3;
    EXPECT_EQ(run_prep(part).cases, i == 0 ? 3 : 2);
    parts.push_back(part.out);
  }
  EXPECT_EQ(merge_datasets(parts, dir.file("merged")), 7);
  const DatasetManifest a = load_manifest(dir.file("whole"));
  const DatasetManifest b = load_manifest(dir.file("merged"));
  ASSERT_EQ(a.cases.size(), b.cases.size());
  EXPECT_EQ(a.classes, b.classes);
  EXPECT_EQ(a.sites.size(), b.sites.size());
  for (const ManifestCase& c : a.cases) {
    const ManifestCase* m = b.find_case(c.id);
    ASSERT_NE(m, nullptr) << c.id;
    EXPECT_EQ(m->split, c.split) << c.id;
    EXPECT_EQ(m->labeled, c.labeled) << c.id;
    EXPECT_EQ(m->class_voxels, c.class_voxels) << c.id;
    const CaseFile x(dir.file("whole/" + c.file));
    const CaseFile y(dir.file("merged/" + m->file));
    EXPECT_EQ(x.read_image(), y.read_image()) << c.id;
    EXPECT_EQ(x.metadata().label_role, y.metadata().label_role) << c.id;
  }
  // A part of another label map cannot join.
  PrepOptions other = whole;
  other.out = dir.file("other");
  other.label_map = "1:1";
  run_prep(other);
  EXPECT_THROW(merge_datasets({parts[0], dir.file("other")}, dir.file("bad")), InputError);
  EXPECT_FALSE(fs::exists(dir.file("bad/manifest.json")));
  EXPECT_THROW(parse_shard("3/3", "--shard"), UsageError);
  EXPECT_THROW(parse_shard("1", "--shard"), UsageError);
  EXPECT_EQ(parse_shard("2/4", "--shard"), (std::pair<int, int>{2, 4}));
}

}  // namespace
}  // namespace cmaf::datastore
