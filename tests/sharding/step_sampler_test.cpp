#include "sharding/step_sampler.h"

#include <gtest/gtest.h>

#include "common/error.h"

namespace cmaf::sharding {
namespace {

RankShard shard() {
  RankShard r;
  r.labeled = {{"a", "cases/a.h5", "big", 100}, {"b", "cases/b.h5", "big", 80}, {"c", "cases/c.h5", "small", 20}};
  r.unlabeled = {{"u", "cases/u.h5", "big", 50}};
  for (const auto& c : r.labeled) r.labeled_slices += c.slices;
  r.unlabeled_slices = 50;
  return r;
}

std::vector<std::pair<std::string, int64_t>> flat(const std::vector<SliceRef>& refs) {
  std::vector<std::pair<std::string, int64_t>> out;
  for (const SliceRef& r : refs) out.emplace_back(r.source->id, r.slice);
  return out;
}

TEST(StepSampler, StepsArePureFunctionsSoAResumeReplaysThem) {
  const RankShard s = shard();
  SamplerOptions o;
  o.labeled_batch = 4;
  o.seed = 3;
  const StepSampler uninterrupted(s, o, 1, nullptr);
  std::vector<std::vector<std::pair<std::string, int64_t>>> first;
  for (int64_t step = 0; step < 20; ++step) first.push_back(flat(uninterrupted.labeled(step)));
  const StepSampler resumed(s, o, 1, nullptr);  // a new process resuming at step 14
  for (int64_t step = 14; step < 20; ++step) EXPECT_EQ(flat(resumed.labeled(step)), first[static_cast<size_t>(step)]);
  EXPECT_NE(flat(StepSampler(s, o, 2, nullptr).labeled(14)), first[14]);  // another rank, another stream
  EXPECT_EQ(resumed.unlabeled(5).size(), 2u);
}

TEST(StepSampler, NoUnlabeledSlicesBeforeTheirStartAndTheLabeledDrawsUnchanged) {
  const RankShard s = shard();
  SamplerOptions o;
  o.labeled_batch = 3;
  o.unlabeled_batch = 2;
  o.seed = 5;
  const StepSampler from_zero(s, o, 0, nullptr);
  o.unlabeled_from_step = 8;
  const StepSampler delayed(s, o, 0, nullptr);
  for (int64_t step = 0; step < 12; ++step) {
    EXPECT_EQ(flat(delayed.labeled(step)), flat(from_zero.labeled(step))) << step;
    if (step < 8) {
      EXPECT_TRUE(delayed.unlabeled(step).empty()) << step;
    } else {  // the same slices the undelayed stream draws at that step
      EXPECT_EQ(flat(delayed.unlabeled(step)), flat(from_zero.unlabeled(step))) << step;
    }
  }
  EXPECT_EQ(from_zero.unlabeled(3).size(), 2u);
}

TEST(StepSampler, CasesAreDrawnBySlicesTimesSiteWeight) {
  const RankShard s = shard();
  SamplerOptions o;
  o.labeled_batch = 10;
  o.site_weights["small"] = 9.0;  // 20 x 9 = 180 against 180 for the big site: half the draws
  const StepSampler sampler(s, o, 0, nullptr);
  int small = 0, total = 0;
  for (int64_t step = 0; step < 2000; ++step) {
    for (const SliceRef& r : sampler.labeled(step)) {
      small += r.source->site == "small";
      ++total;
      ASSERT_LT(r.slice, r.source->slices);
    }
  }
  EXPECT_NEAR(static_cast<double>(small) / total, 0.5, 0.02);
}

TEST(StepSampler, ForegroundFractionMatchesTheSettingAndFavoursRareClasses) {
  const RankShard s = shard();
  ForegroundIndex index;
  for (int64_t z = 10; z < 60; ++z) index["a"][1].push_back(z);  // common organ
  index["b"][2] = {7};                                            // rare organ: one slice
  SamplerOptions o;
  o.labeled_batch = 5;
  o.foreground_fraction = 0.4;  // 2 of 5
  const StepSampler sampler(s, o, 0, &index);
  int foreground = 0, rare = 0, total = 0;
  for (int64_t step = 0; step < 1000; ++step) {
    for (const SliceRef& r : sampler.labeled(step)) {
      const bool in_a = r.source->id == "a" && r.slice >= 10 && r.slice < 60;
      const bool in_b = r.source->id == "b" && r.slice == 7;
      foreground += (in_a || in_b);
      rare += in_b;
      ++total;
    }
  }
  // 40 % forced, plus what the other 60 % hit by chance: case a (weight 100/200) on one of its
  // 50 organ slices out of 100, or case b (80/200) on its one slice out of 80.
  const double expected = 0.4 + 0.6 * (0.5 * 0.5 + 0.4 / 80.0);
  EXPECT_GT(static_cast<double>(foreground) / total, 0.4);
  EXPECT_NEAR(static_cast<double>(foreground) / total, expected, 0.05);
  EXPECT_NEAR(static_cast<double>(rare) / total, 0.2, 0.03);  // half of the forced draws
  o.foreground_fraction = 1.5;
  EXPECT_THROW(StepSampler(s, o, 0, &index), InputError);
}

TEST(StepSampler, StepsPerEpochComeFromTheLargestShard) {
  ShardPlan plan;
  plan.ranks.resize(2);
  plan.ranks[0].labeled_slices = 100;
  plan.ranks[1].labeled_slices = 41;
  EXPECT_EQ(steps_per_epoch(plan, 4), 25);
  EXPECT_EQ(steps_per_epoch(plan, 1000), 1);
}

}  // namespace
}  // namespace cmaf::sharding
