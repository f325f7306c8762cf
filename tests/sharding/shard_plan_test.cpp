#include "sharding/shard_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "common/error.h"

namespace cmaf::sharding {
namespace {

datastore::DatasetManifest manifest_with(const std::vector<int64_t>& labeled_slices,
                                         const std::vector<int64_t>& unlabeled_slices,
                                         const std::vector<std::string>& sites = {"a"}) {
  datastore::DatasetManifest m;
  m.classes = {"background", "organ"};
  for (const std::string& s : sites) m.sites.push_back({s, "", nullptr, ""});
  int i = 0;
  auto add = [&](int64_t slices, bool labeled) {
    datastore::ManifestCase c;
    c.id = "c" + std::to_string(i);
    c.file = "cases/" + c.id + ".h5";
    c.site = sites[static_cast<size_t>(i) % sites.size()];
    c.labeled = labeled;
    c.has_label = true;
    c.shape = {slices, 8, 8};
    c.class_voxels = {1, 1};
    c.class_slices = {1, 1};
    m.cases.push_back(c);
    ++i;
  };
  for (int64_t s : labeled_slices) add(s, true);
  for (int64_t s : unlabeled_slices) add(s, false);
  datastore::ManifestCase test = m.cases.back();
  test.id = "test_case";
  test.split = datastore::Split::kTest;
  test.labeled = false;
  m.cases.push_back(test);  // never assigned
  return m;
}

const std::vector<int64_t> kLabeled{150, 90, 85, 140, 100, 95, 120, 198, 110};
const std::vector<int64_t> kUnlabeled{80, 99, 130, 91, 105, 154, 96};

TEST(ShardPlan, EveryTrainingCaseOnceAndBalancedWithinTheLargestCase) {
  const auto m = manifest_with(kLabeled, kUnlabeled);
  for (int world : {1, 2, 3, 7}) {
    ShardPlanOptions o;
    o.world_size = world;
    const ShardPlan plan = plan_shards(m, o);
    ASSERT_EQ(plan.ranks.size(), static_cast<size_t>(world));
    std::map<std::string, int> seen;
    int64_t min_l = INT64_MAX, max_l = 0, min_u = INT64_MAX, max_u = 0;
    for (const RankShard& r : plan.ranks) {
      for (const ShardCase& c : r.labeled) ++seen[c.id];
      for (const ShardCase& c : r.unlabeled) ++seen[c.id];
      min_l = std::min(min_l, r.labeled_slices);
      max_l = std::max(max_l, r.labeled_slices);
      min_u = std::min(min_u, r.unlabeled_slices);
      max_u = std::max(max_u, r.unlabeled_slices);
      EXPECT_FALSE(r.shares_cases) << world;
    }
    EXPECT_EQ(seen.size(), kLabeled.size() + kUnlabeled.size()) << world;
    for (const auto& [id, n] : seen) EXPECT_EQ(n, 1) << id;
    EXPECT_EQ(seen.count("test_case"), 0u);
    EXPECT_LE(max_l - min_l, 198) << world;  // the largest labeled case
    EXPECT_LE(max_u - min_u, 154) << world;  // the largest unlabeled case
  }
}

TEST(ShardPlan, SameInputsSamePlanAndEpochReshuffleKeepsBalance) {
  const auto m = manifest_with(kLabeled, kUnlabeled);
  ShardPlanOptions o;
  o.world_size = 3;
  o.reshuffle_each_epoch = true;
  o.seed = 9;
  auto ids = [](const ShardPlan& p, int r) {
    std::vector<std::string> out;
    for (const ShardCase& c : p.ranks[static_cast<size_t>(r)].labeled) out.push_back(c.id);
    return out;
  };
  const ShardPlan a = plan_shards(m, o), b = plan_shards(m, o);
  for (int r = 0; r < 3; ++r) EXPECT_EQ(ids(a, r), ids(b, r));
  bool moved = false;
  for (int64_t epoch = 1; epoch < 6 && !moved; ++epoch) {
    o.epoch = epoch;
    const ShardPlan next = plan_shards(m, o);
    for (int r = 0; r < 3; ++r) moved |= ids(next, r) != ids(a, r);
    std::vector<int64_t> loads_a, loads_n;
    for (int r = 0; r < 3; ++r) {
      loads_a.push_back(a.ranks[static_cast<size_t>(r)].labeled_slices);
      loads_n.push_back(next.ranks[static_cast<size_t>(r)].labeled_slices);
    }
    std::sort(loads_a.begin(), loads_a.end());
    std::sort(loads_n.begin(), loads_n.end());
    EXPECT_EQ(loads_a, loads_n);  // the same bins, dealt differently
  }
  EXPECT_TRUE(moved) << "no epoch reshuffled the assignment";
}

TEST(ShardPlan, MoreRanksThanCasesSharesAndSaysSo) {
  const auto m = manifest_with({50, 60}, {70});
  ShardPlanOptions o;
  o.world_size = 5;
  const ShardPlan plan = plan_shards(m, o);
  for (const RankShard& r : plan.ranks) {
    EXPECT_FALSE(r.labeled.empty());
    EXPECT_FALSE(r.unlabeled.empty());
  }
  EXPECT_TRUE(plan.ranks[4].shares_cases);
  ASSERT_FALSE(plan.notes.empty());
  EXPECT_NE(plan.notes[0].find("shares labeled case"), std::string::npos) << plan.notes[0];
}

TEST(ShardPlan, SiteAffinityKeepsASiteOnItsRanks) {
  const auto m = manifest_with(kLabeled, kUnlabeled, {"big_hospital", "small_clinic"});
  ShardPlanOptions o;
  o.world_size = 4;
  o.site_ranks["small_clinic"] = {3};
  const ShardPlan plan = plan_shards(m, o);
  for (int r = 0; r < 3; ++r) {
    for (const ShardCase& c : plan.ranks[static_cast<size_t>(r)].labeled) EXPECT_NE(c.site, "small_clinic");
  }
  for (const ShardCase& c : plan.ranks[3].labeled) EXPECT_EQ(c.site, "small_clinic");
  o.site_ranks["small_clinic"] = {9};
  EXPECT_THROW(plan_shards(m, o), InputError);
  o.world_size = 0;
  EXPECT_THROW(plan_shards(m, o), InputError);
}

}  // namespace
}  // namespace cmaf::sharding
