#include "datastore/inspect.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "datastore/case_file.h"
#include "datastore/synth.h"
#include "tests/datastore/test_volumes.h"
#include "tests/temp_dir.h"

namespace cmaf::datastore {
namespace {
namespace fs = std::filesystem;

std::string make_dataset(const test::TempDir& dir) {
  SynthOptions o;
  o.out = dir.file("ds");
  o.cases = 3;
  o.phantom = {32, 4, 3};
  run_synth(o);
  return o.out;
}

bool mentions(const std::vector<std::string>& lines, const std::string& phrase) {
  for (const std::string& line : lines) {
    if (line.find(phrase) != std::string::npos) return true;
  }
  return false;
}

TEST(Inspect, SummaryShowsSplitsAndTheClassTail) {
  test::TempDir dir;
  const InspectReport report = inspect_dataset(make_dataset(dir));
  EXPECT_EQ(report.files_checked, 3);
  EXPECT_TRUE(report.problems.empty());
  const std::string text = report.to_text();
  EXPECT_NE(text.find("3 cases, 12 slices, 4 classes"), std::string::npos) << text;
  EXPECT_NE(text.find("organ_3"), std::string::npos) << text;
  EXPECT_EQ(report.to_json()["files_checked"], 3);
}

TEST(Inspect, CorruptCaseFileIsAProblemNamingIt) {
  test::TempDir dir;
  const std::string ds = make_dataset(dir);
  const std::string victim = ds + "/cases/synth_0001.h5";
  test::write_bytes(victim, test::read_bytes(victim).substr(0, 800));
  const InspectReport report = inspect_dataset(ds);
  ASSERT_EQ(report.problems.size(), 1u);
  EXPECT_NE(report.problems[0].find(victim), std::string::npos) << report.problems[0];
}

TEST(Inspect, FileThatDisagreesWithTheManifestIsAProblem) {
  test::TempDir dir;
  const std::string ds = make_dataset(dir);
  fs::copy_file(ds + "/cases/synth_0000.h5", ds + "/cases/synth_0002.h5",
                fs::copy_options::overwrite_existing);
  const InspectReport report = inspect_dataset(ds);
  EXPECT_TRUE(mentions(report.problems, "case_id: file has synth_0000, manifest lists synth_0002"));
}

TEST(Inspect, VerifyDataRecountsClassVoxels) {
  test::TempDir dir;
  const std::string ds = make_dataset(dir);
  // Rewrite one case with a different label but the same layout: only a voxel read can tell.
  const CaseFile original(ds + "/cases/synth_0000.h5");
  CaseMetadata m = original.metadata();
  const std::vector<float> image = original.read_image();
  std::vector<uint8_t> label(image.size(), 0);
  write_case_file(ds + "/cases/synth_0000.h5", m, image, label);
  EXPECT_TRUE(inspect_dataset(ds).problems.empty());
  EXPECT_TRUE(mentions(inspect_dataset(ds, {true, false}).problems, "class counts differ"));
}

TEST(Inspect, StrayAndLeftoverFilesAreWarnings) {
  test::TempDir dir;
  const std::string ds = make_dataset(dir);
  std::ofstream(ds + "/cases/.tmp-123-synth_0009.h5") << "x";
  std::ofstream(ds + "/cases/old.h5") << "x";
  const InspectReport report = inspect_dataset(ds);
  EXPECT_TRUE(report.problems.empty());
  EXPECT_TRUE(mentions(report.warnings, "leftover of an interrupted write"));
  EXPECT_TRUE(mentions(report.warnings, "not listed in the manifest"));
}

}  // namespace
}  // namespace cmaf::datastore
