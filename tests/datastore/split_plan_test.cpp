#include "datastore/split_plan.h"

#include <gtest/gtest.h>

#include "common/error.h"

namespace cmaf::datastore {
namespace {

std::vector<std::string> ids(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back("c" + std::to_string(10 + i));
  return out;
}

int count(const std::map<std::string, CaseAssignment>& plan, Split split, bool labeled) {
  int n = 0;
  for (const auto& [id, a] : plan) n += (a.split == split && a.labeled == labeled) ? 1 : 0;
  return n;
}

TEST(SplitPlan, CountsAreHonouredAndTheRestIsUnlabeledTrain) {
  SplitRequest r;
  r.test = parse_case_selection("3", "--test-cases");
  r.val = parse_case_selection("2", "--val-cases");
  r.labeled = parse_case_selection("2", "--labeled-cases");
  const auto plan = plan_splits(ids(12), r);
  EXPECT_EQ(plan.size(), 12u);
  EXPECT_EQ(count(plan, Split::kTest, false), 3);
  EXPECT_EQ(count(plan, Split::kVal, false), 2);
  EXPECT_EQ(count(plan, Split::kTrain, true), 2);
  EXPECT_EQ(count(plan, Split::kTrain, false), 5);
}

TEST(SplitPlan, SameSeedSamePlanOtherSeedOtherPlanOrderIrrelevant) {
  SplitRequest r;
  r.test = parse_case_selection("4", "--test-cases");
  auto shuffled = ids(12);
  std::reverse(shuffled.begin(), shuffled.end());
  const auto a = plan_splits(ids(12), r);
  EXPECT_EQ(a.size(), plan_splits(shuffled, r).size());
  for (const auto& [id, assignment] : plan_splits(shuffled, r)) {
    EXPECT_EQ(a.at(id).split, assignment.split) << id;
  }
  r.seed = 99;
  bool differs = false;
  for (const auto& [id, assignment] : plan_splits(ids(12), r)) differs |= a.at(id).split != assignment.split;
  EXPECT_TRUE(differs);
}

TEST(SplitPlan, ExplicitIdsAndDefaultAllLabeled) {
  SplitRequest r;
  r.test = parse_case_selection("c10,c11", "--test-cases");
  const auto plan = plan_splits(ids(5), r);
  EXPECT_EQ(plan.at("c10").split, Split::kTest);
  EXPECT_EQ(plan.at("c11").split, Split::kTest);
  EXPECT_EQ(count(plan, Split::kTrain, true), 3);
}

TEST(SplitPlan, LabeledFractionRoundsAndKeepsAtLeastOne) {
  SplitRequest r;
  r.labeled_fraction = 0.15;
  EXPECT_EQ(count(plan_splits(ids(12), r), Split::kTrain, true), 2);
  r.labeled_fraction = 0.01;
  EXPECT_EQ(count(plan_splits(ids(12), r), Split::kTrain, true), 1);
  r.labeled_fraction = 0.0;
  EXPECT_EQ(count(plan_splits(ids(12), r), Split::kTrain, true), 0);
}

TEST(SplitPlan, ImpossibleRequestsAreErrorsNamingTheOption) {
  SplitRequest r;
  r.test = parse_case_selection("20", "--test-cases");
  EXPECT_THROW(plan_splits(ids(5), r), InputError);
  r.test = parse_case_selection("c99", "--test-cases");
  EXPECT_THROW(plan_splits(ids(5), r), InputError);
  r.test = parse_case_selection("c10", "--test-cases");
  r.val = parse_case_selection("c10", "--val-cases");  // already taken by test
  try {
    plan_splits(ids(5), r);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.subject(), "--val-cases");
  }
  r = SplitRequest{};
  r.labeled = parse_case_selection("1", "--labeled-cases");
  r.labeled_fraction = 0.5;
  EXPECT_THROW(plan_splits(ids(5), r), InputError);
  EXPECT_THROW(parse_case_selection("a,,b", "--test-cases"), InputError);
  EXPECT_THROW(parse_case_selection("a,a", "--test-cases"), InputError);
}

}  // namespace
}  // namespace cmaf::datastore
