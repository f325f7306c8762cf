#include "datastore/label_map.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "tests/datastore/test_volumes.h"

namespace cmaf::datastore {
namespace {

std::vector<std::string> btcv_classes() {
  return {"background", "spleen", "right_kidney", "left_kidney", "gallbladder", "esophagus",
          "liver", "stomach", "aorta", "inferior_vena_cava", "portal_and_splenic_vein",
          "pancreas", "right_adrenal_gland", "left_adrenal_gland"};
}

TEST(LabelMap, BtcvToSynapse8FollowsTransUNetOrder) {
  const LabelMap map = parse_label_map(kBtcvToSynapse8, btcv_classes(), "");
  EXPECT_EQ(map.classes, (std::vector<std::string>{"background", "aorta", "gallbladder", "left_kidney",
                                                   "right_kidney", "liver", "pancreas", "spleen",
                                                   "stomach"}));
  // BTCV id -> Synapse id, METHOD.md section 4; esophagus, IVC, veins, adrenals -> 0.
  const std::vector<int> expected{0, 7, 4, 3, 2, 0, 5, 8, 1, 0, 0, 6, 0, 0};
  EXPECT_EQ(map.target_of_source, expected);
  for (size_t id = 0; id < expected.size(); ++id) {
    if (expected[id] > 0) EXPECT_EQ(map.classes[expected[id]], btcv_classes()[id]);
  }
}

TEST(LabelMap, NoneKeepsSourceClassesAndRenames) {
  const LabelMap map = parse_label_map("none", {"bg", "a", "b"}, "background,x,y");
  EXPECT_EQ(map.target_of_source, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(map.classes, (std::vector<std::string>{"background", "x", "y"}));
  EXPECT_THROW(parse_label_map("none", {"bg", "a", "b"}, "background,x"), InputError);
}

TEST(LabelMap, ExplicitMapAndItsErrors) {
  const LabelMap map = parse_label_map("2:1,3:1", {"bg", "a", "b", "c"}, "");
  EXPECT_EQ(map.target_of_source, (std::vector<int>{0, 0, 1, 1}));
  EXPECT_EQ(map.classes.size(), 2u);
  EXPECT_THROW(parse_label_map("2-1", {"bg", "a", "b"}, ""), InputError);
  EXPECT_THROW(parse_label_map("9:1", {"bg", "a", "b"}, ""), InputError);
  EXPECT_THROW(parse_label_map("x:1", {"bg", "a", "b"}, ""), InputError);
  EXPECT_THROW(parse_label_map(kBtcvToSynapse8, {"bg", "a"}, ""), InputError);
}

TEST(LabelMap, UndeclaredValueIsReportedWithCountAndFirstVoxel) {
  Volume<int32_t> labels;
  labels.geometry = test::small_geometry(2, 3, 4);
  labels.voxels.assign(24, 1);
  labels.voxels[17] = 14;  // z=1 y=1 x=1
  labels.voxels[23] = 14;
  const LabelMap map = parse_label_map("none", btcv_classes(), "");
  try {
    apply_label_map(labels, map, "labelsTr/x.nii.gz");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              "labelsTr/x.nii.gz: data: label value 14 (2 voxels, first at z=1 y=1 x=1) is "
              "outside the declared classes 0..13");
  }
}

}  // namespace
}  // namespace cmaf::datastore
