#include "datastore/manifest.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/error.h"
#include "tests/temp_dir.h"

namespace cmaf::datastore {
namespace {

DatasetManifest sample() {
  DatasetManifest m;
  m.classes = {"background", "liver"};
  m.sites.push_back({"a", "/src", {{"intensity", "ct-window"}}, "2026-11-25T00:00:00Z"});
  ManifestCase c;
  c.id = "c1";
  c.file = "cases/c1.h5";
  c.site = "a";
  c.split = Split::kTrain;
  c.labeled = true;
  c.has_label = true;
  c.shape = {3, 4, 5};
  c.spacing = {3.0, 0.8, 0.8};
  c.class_voxels = {50, 10};
  c.class_slices = {3, 2};
  c.source = "/src/c1_0000.nii.gz";
  m.cases.push_back(c);
  return m;
}

std::string error_of(const nlohmann::json& json) {
  try {
    manifest_from_json(json, "ds/manifest.json");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(Manifest, SaveAndLoadRoundTrip) {
  test::TempDir dir;
  save_manifest(dir.path(), sample());
  const DatasetManifest loaded = load_manifest(dir.path());
  EXPECT_EQ(to_json(loaded), to_json(sample()));
  ASSERT_NE(loaded.find_case("c1"), nullptr);
  EXPECT_EQ(loaded.find_case("c1")->slices(), 3);
  EXPECT_EQ(loaded.find_case("c2"), nullptr);
  EXPECT_EQ(to_json(loaded)["cases"][0]["slices"], 3);
}

TEST(Manifest, ErrorsNameTheFileAndTheJsonPath) {
  nlohmann::json j = to_json(sample());
  j["cases"][0].erase("shape");
  EXPECT_EQ(error_of(j), "ds/manifest.json: cases[0].shape: is missing");

  j = to_json(sample());
  j["cases"][0]["slices"] = "three";  // slices is derived from shape; shape's type matters
  j["cases"][0]["shape"] = "3x4x5";
  EXPECT_NE(error_of(j).find("cases[0].shape: has the wrong type (string)"), std::string::npos);

  j = to_json(sample());
  j["cases"].push_back(j["cases"][0]);
  EXPECT_NE(error_of(j).find("'c1' appears twice"), std::string::npos) << error_of(j);

  j = to_json(sample());
  j["cases"][0]["site"] = "b";
  EXPECT_NE(error_of(j).find("cases[0].site: 'b' is not listed in sites"), std::string::npos);

  j = to_json(sample());
  j["cases"][0]["split"] = "training";
  EXPECT_NE(error_of(j).find("expected train, val or test"), std::string::npos);

  j = to_json(sample());
  j["cases"][0]["class_voxels"] = {1, 2, 3};
  EXPECT_NE(error_of(j).find("has 3 entries, expected 2"), std::string::npos);

  j = to_json(sample());
  j["format_version"] = 99;
  EXPECT_NE(error_of(j).find("format_version: 99, expected 1..1"), std::string::npos);
}

TEST(Manifest, LabeledRequiresATrainCaseWithALabel) {
  nlohmann::json j = to_json(sample());
  j["cases"][0]["split"] = "test";
  EXPECT_NE(error_of(j).find("labeled: is true, expected only for train cases"), std::string::npos);
}

TEST(Manifest, NotJsonAndMissingAreClearErrors) {
  test::TempDir dir;
  EXPECT_THROW(load_manifest(dir.path()), InputError);
  std::ofstream(dir.file("manifest.json")) << "{ not json";
  try {
    load_manifest(dir.path());
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("is not valid JSON"), std::string::npos);
  }
}

}  // namespace
}  // namespace cmaf::datastore
