// The pace report (core/rank_pace.h): which rank is slowest and by how much, when that is worth a
// warning, and, with ranks as threads, that the busy and waited times are measured where a rank
// really works and waits.
#include "core/rank_pace.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "cluster/local_communicator.h"

namespace cmaf::core {
namespace {

PaceReport report_of(std::vector<double> busy) {
  PaceReport r;
  r.busy_seconds = busy;
  r.waited_seconds.assign(busy.size(), 0.01);
  for (size_t i = 0; i < busy.size(); ++i) r.hosts.push_back("node" + std::to_string(i));
  r.steps = 10;
  return r;
}

TEST(PaceReport, NamesTheSlowestRankAgainstTheOthersMedian) {
  const PaceReport r = report_of({0.50, 0.80, 0.52, 0.49});
  EXPECT_EQ(r.slowest_rank(), 1);
  EXPECT_DOUBLE_EQ(r.others_median_busy(), 0.50);
  EXPECT_NEAR(r.slowest_excess(), 0.6, 1e-12);
  EXPECT_TRUE(r.straggler());
  const nlohmann::json j = r.to_json();
  EXPECT_EQ(j["slowest_rank"], 1);
  EXPECT_EQ(j["slowest_host"], "node1");
  EXPECT_DOUBLE_EQ(j["busy_s_max"].get<double>(), 0.80);
  EXPECT_DOUBLE_EQ(j["busy_s_median"].get<double>(), 0.51);
  const std::string w = r.warning();
  EXPECT_NE(w.find("rank 1 on node1 was busy 0.800 s a step over the last 10 steps, 60 % more"), std::string::npos)
      << w;
}

TEST(PaceReport, TwoRanksCompareWithEachOtherAndSmallGapsAreNoStraggler) {
  EXPECT_FALSE(report_of({1.00, 1.05}).straggler());         // 5 %
  EXPECT_TRUE(report_of({1.00, 1.00 * (1 + kStragglerMargin) + 0.01}).straggler());
  EXPECT_EQ(report_of({1.20, 1.00}).slowest_rank(), 0);
  const PaceReport alone = report_of({0.7});
  EXPECT_FALSE(alone.straggler());
  EXPECT_EQ(alone.slowest_excess(), 0.0);
  EXPECT_FALSE(report_of({0.0, 0.0}).straggler());  // a window of no work divides by nothing
  EXPECT_FALSE(report_of({0.010, 0.014}).straggler());  // 40 %, but 4 ms: noise of short steps
}

TEST(PaceMeter, WarnsForANewStragglerAtOnceAndForALastingOneEveryTenWindows) {
  cluster::LocalCommunicator world;
  PaceMeter meter(world);
  const PaceReport slow1 = report_of({0.5, 0.9}), slow0 = report_of({0.9, 0.5}), even = report_of({0.5, 0.5});
  EXPECT_FALSE(meter.should_warn(even));
  EXPECT_TRUE(meter.should_warn(slow1));
  int warned = 0;
  for (int window = 1; window <= 20; ++window) warned += meter.should_warn(slow1) ? 1 : 0;
  EXPECT_EQ(warned, 2);  // windows 10 and 20 after the first warning
  EXPECT_TRUE(meter.should_warn(slow0));
  // Two ranks taking turns: each is named at most once every ten windows.
  warned = 0;
  for (int window = 1; window <= 20; ++window) warned += meter.should_warn(window % 2 ? slow1 : slow0) ? 1 : 0;
  EXPECT_EQ(warned, 4);
}

TEST(PaceMeter, RanksAsThreadsSeeTheSleepyRanksWorkAsBusyAndItsPeersWaitingForIt) {
  constexpr int kSteps = 4;
  // Rank 1's extra work a step, seconds; half of it is asked for below, so that rank 0 oversleeping
  // its 10 ms on a loaded machine (by tens of ms) does not hide it.
  constexpr double kExtra = 0.2;
  auto group = cluster::make_local_group(2);
  std::vector<PaceReport> reports(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      cluster::Communicator& world = *group[static_cast<size_t>(r)];
      PaceMeter meter(world);
      for (int step = 0; step < kSteps; ++step) {
        meter.begin_step();
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        if (r == 1) std::this_thread::sleep_for(std::chrono::duration<double>(kExtra));
        world.all_reduce(at::ones({4}), cluster::ReduceOp::kSum);  // the step's meeting point
        meter.end_step();
      }
      reports[static_cast<size_t>(r)] = meter.gather();
    });
  }
  for (std::thread& t : ranks) t.join();
  for (const PaceReport& report : reports) {
    EXPECT_EQ(report.steps, kSteps);
    EXPECT_EQ(report.slowest_rank(), 1);
    EXPECT_TRUE(report.straggler());
    EXPECT_GT(report.busy_seconds[1] - report.busy_seconds[0], 0.5 * kExtra);
    EXPECT_GT(report.waited_seconds[0], 0.5 * kExtra);  // rank 0 waited in the all-reduce
    EXPECT_LT(report.waited_seconds[1], report.waited_seconds[0]);
  }
  EXPECT_EQ(reports[0].busy_seconds, reports[1].busy_seconds);  // one report on every rank
}

}  // namespace
}  // namespace cmaf::core
