#include "sharding/foreground_index.h"

#include <gtest/gtest.h>

#include "datastore/case_file.h"
#include "datastore/synth.h"
#include "tests/temp_dir.h"

namespace cmaf::sharding {
namespace {

TEST(ForegroundIndex, ListsExactlyTheSlicesHoldingEachClass) {
  test::TempDir dir;
  datastore::SynthOptions o;
  o.out = dir.file("ds");
  o.cases = 4;
  o.phantom = {48, 8, 4};
  o.labeled_cases = "2";
  datastore::run_synth(o);
  const datastore::DatasetManifest manifest = datastore::load_manifest(o.out);
  const ShardPlan plan = plan_shards(manifest, ShardPlanOptions{});
  const ForegroundIndex index = build_foreground_index(o.out, plan.ranks[0]);
  ASSERT_EQ(index.size(), 2u);  // the labeled cases only
  for (const auto& [id, classes] : index) {
    const datastore::ManifestCase* entry = manifest.find_case(id);
    const datastore::CaseFile file(o.out + "/" + entry->file);
    std::vector<uint8_t> slice(48 * 48);
    for (int cls = 1; cls <= 4; ++cls) {
      const auto it = classes.find(cls);
      const size_t listed = it == classes.end() ? 0 : it->second.size();
      EXPECT_EQ(static_cast<int64_t>(listed), entry->class_slices[static_cast<size_t>(cls)]) << id << " class " << cls;
      if (it == classes.end()) continue;
      for (int64_t z : it->second) {
        file.read_label_slice(z, datastore::LabelUse::kTraining, slice.data());
        EXPECT_NE(std::find(slice.begin(), slice.end(), cls), slice.end()) << id << " z " << z;
      }
    }
  }
}

}  // namespace
}  // namespace cmaf::sharding
