// PhaseWatchdog without MPI: a phase that ends in time leaves the process alone; one that
// overruns ends it with kStallExitCode and a message naming the phase and the call; after
// rank_failed() it ends with the rank's own status. (The MPI phases it guards are tested with
// real late ranks in stall_test.sh.) CallWatchdog, re-armed around each call, the same way: it
// guards the NCCL collectives, which cannot run here (no GPU).
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "cluster/phase_watchdog.h"

namespace cmaf::cluster {
namespace {

using std::chrono::milliseconds;

TEST(PhaseWatchdog, APhaseThatEndsInTimeIsLeftAlone) {
  {
    PhaseWatchdog watchdog("a quick phase", milliseconds(1000), "rank 0 on here",
                           WatchdogEnd::kExitProcess);
    watchdog.at("a quick call");
  }
  std::this_thread::sleep_for(milliseconds(1500));  // past the limit, and the process still runs
  SUCCEED();
}

TEST(PhaseWatchdog, ItsEndDoesNotWaitForTheLimit) {
  const auto start = std::chrono::steady_clock::now();
  {
    PhaseWatchdog watchdog("a phase", std::chrono::minutes(10), "rank 0 on here",
                           WatchdogEnd::kExitProcess);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST(PhaseWatchdogDeathTest, AnOverrunEndsTheProcessNamingThePhaseAndTheCall) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        PhaseWatchdog watchdog("MPI start-up", milliseconds(50), "rank 3 on node17",
                               WatchdogEnd::kExitProcess);
        watchdog.at("MPI_Init_thread");
        std::this_thread::sleep_for(std::chrono::seconds(5));
      },
      testing::ExitedWithCode(kStallExitCode),
      "\\[rank 3 on node17\\] MPI start-up has not finished after 0.05 s, the stall limit \\(still in "
      "MPI_Init_thread\\)");
}

TEST(PhaseWatchdogDeathTest, AfterTheRankFailedItEndsWithTheRanksStatus) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        PhaseWatchdog::rank_failed(4);
        PhaseWatchdog watchdog("MPI shut-down", milliseconds(50), "rank 1 on node2",
                               WatchdogEnd::kExitProcess);
        watchdog.at("MPI_Finalize");
        std::this_thread::sleep_for(std::chrono::seconds(5));
      },
      testing::ExitedWithCode(4),
      "\\[rank 1 on node2\\] this rank has failed \\(its error is above\\), and the other ranks have "
      "not joined it in MPI shut-down within 0.05 s \\(still in MPI_Finalize\\)");
}

TEST(CallWatchdog, CallsThatEachEndInTimeAreLeftAlone) {
  // 20 calls of 100 ms under a 1 s limit: 2 s in all, none over.
  CallWatchdog watchdog(milliseconds(1000), "rank 0 on here", WatchdogEnd::kExitProcess);
  for (int k = 0; k < 20; ++k) {
    watchdog.arm("a collective");
    std::this_thread::sleep_for(milliseconds(100));
    watchdog.disarm();
  }
  std::this_thread::sleep_for(milliseconds(1500));  // disarmed: idle time does not count
  SUCCEED();
}

TEST(CallWatchdogDeathTest, ACallOverTheLimitEndsTheProcessNamingIt) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        CallWatchdog watchdog(milliseconds(100), "rank 2 on gpu7", WatchdogEnd::kExitProcess);
        watchdog.arm("a quick collective");
        watchdog.disarm();
        watchdog.arm("ncclAllReduce");
        std::this_thread::sleep_for(std::chrono::seconds(5));
      },
      testing::ExitedWithCode(kStallExitCode),
      "\\[rank 2 on gpu7\\] stall: ncclAllReduce has not completed after 0.1 s, the stall limit");
}

}  // namespace
}  // namespace cmaf::cluster
