#include "datastore/synth.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "datastore/case_file.h"
#include "datastore/inspect.h"
#include "datastore/manifest.h"
#include "tests/temp_dir.h"

namespace cmaf::datastore {
namespace {

SynthOptions small(const std::string& out) {
  SynthOptions o;
  o.out = out;
  o.cases = 7;
  o.phantom = {48, 6, 4};
  o.sites = 2;
  o.seed = 5;
  o.test_cases = "2";
  o.labeled_cases = "2";
  return o;
}

TEST(Synth, WritesSplitsSitesAndLabelRoles) {
  test::TempDir dir;
  const SynthOptions o = small(dir.file("ds"));
  const SynthReport r = run_synth(o);
  EXPECT_EQ(r.cases, 7);
  EXPECT_EQ(r.slices, 42);
  const DatasetManifest m = load_manifest(o.out);
  EXPECT_EQ(m.classes.size(), 5u);
  int test_cases = 0, labeled = 0, unlabeled = 0;
  for (const ManifestCase& c : m.cases) {
    test_cases += c.split == Split::kTest;
    labeled += c.labeled;
    unlabeled += c.split == Split::kTrain && !c.labeled;
    EXPECT_TRUE(c.has_label);  // synthetic truth is kept for evaluation
    const CaseFile file(o.out + "/" + c.file);
    EXPECT_EQ(file.metadata().label_role == LabelRole::kSupervision, c.labeled);
  }
  EXPECT_EQ(test_cases, 2);
  EXPECT_EQ(labeled, 2);
  EXPECT_EQ(unlabeled, 3);
  EXPECT_EQ(m.find_case("synth_0003")->site, "site1");
  EXPECT_TRUE(inspect_dataset(o.out, {true, true}).problems.empty());
}

TEST(Synth, SameParametersAgainIsANoOpDifferentParametersAreRefused) {
  test::TempDir dir;
  SynthOptions o = small(dir.file("ds"));
  run_synth(o);
  const auto before = dir.entries();
  EXPECT_TRUE(run_synth(o).already_present);
  EXPECT_EQ(dir.entries(), before);
  o.seed = 6;
  try {
    run_synth(o);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "generator");
    EXPECT_NE(std::string(e.what()).find("already holds a different dataset"), std::string::npos);
  }
  EXPECT_EQ(dir.entries(), before);
}

TEST(Synth, SameSeedGivesIdenticalFiles) {
  test::TempDir dir;
  run_synth(small(dir.file("a")));
  run_synth(small(dir.file("b")));
  const CaseFile a(dir.file("a/cases/synth_0004.h5"));
  const CaseFile b(dir.file("b/cases/synth_0004.h5"));
  EXPECT_EQ(a.read_image(), b.read_image());
  EXPECT_EQ(a.read_label(LabelUse::kEvaluation), b.read_label(LabelUse::kEvaluation));
}

TEST(Synth, BadOptionsAreNamed) {
  test::TempDir dir;
  SynthOptions o = small(dir.file("ds"));
  o.sites = 9;
  EXPECT_THROW(run_synth(o), InputError);
  o = small(dir.file("ds"));
  o.test_cases = "9";
  EXPECT_THROW(run_synth(o), InputError);
  EXPECT_TRUE(dir.entries().empty());
}

}  // namespace
}  // namespace cmaf::datastore
