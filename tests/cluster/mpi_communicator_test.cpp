// The same checks as local_communicator_test.cpp, as real processes over MPI.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "cluster/cluster_error.h"
#include "cluster/mpi_communicator.h"
#include "tests/cluster/collective_checks.h"
#include "tests/cluster/mpi_world.h"

namespace cmaf::test {
namespace {

TEST(Mpi, WorldHasTheLaunchedSize) {
  EXPECT_GE(mpi_world().size(), 2);
  EXPECT_EQ(mpi_world().name(), "mpi");
}
// Each node-local rank's CPUs reach every rank of its node: this rank's own entry is its mask, and
// all_gather of the world's masks (as CPU bit words) gives the same sets for the ranks of this
// node. CMAF_EXPECT_BOUND_CPUS=1 (a run under mpirun --bind-to hwthread): one CPU per rank, and no
// two local ranks share one.
TEST(MpiRuntime, EveryLocalRanksAllowedCpus) {
  const cluster::ProcessRuntime& runtime = mpi_runtime();
  const auto& local = runtime.local_cpus();
  ASSERT_EQ(static_cast<int>(local.size()), runtime.local_size());  // the same on every rank
  const std::vector<int> mine_cpus = cluster::launch_cpus();
  EXPECT_EQ(local[static_cast<size_t>(runtime.local_rank())], mine_cpus);
  EXPECT_EQ(runtime.allowed_cpu_count(), static_cast<int>(mine_cpus.size()));
  // CMAF_EXPECT_LAUNCH_CPUS (cluster_mpi_np2_openmp_bound): mpirun --bind-to none gave every rank
  // that many CPUs, and OMP_PROC_BIND=true made the OpenMP runtime bind each main thread to one of
  // them, the same one on every rank.
  const char* launched = std::getenv("CMAF_EXPECT_LAUNCH_CPUS");
  if (launched != nullptr) {
    EXPECT_EQ(runtime.allowed_cpu_count(), std::atoi(launched));
    EXPECT_EQ(runtime.main_thread_cpus().size(), 1U);
    const std::string& warning = runtime.cpu_binding_warning();
    EXPECT_NE(warning.find("(OMP_PROC_BIND=true)"), std::string::npos) << warning;
    EXPECT_NE(warning.find("local ranks 0 and 1 are on the same CPU(s)"), std::string::npos) << warning;
  } else {
    EXPECT_EQ(runtime.main_thread_cpus(), cluster::allowed_cpus());
    if (cluster::openmp_binding_variables().empty()) {
      EXPECT_EQ(runtime.main_thread_cpus(), mine_cpus);
      EXPECT_EQ(runtime.cpu_binding_warning(), "");
    }
  }
  // Independently: every rank's (local rank, host, mask bits) through the world communicator.
  constexpr int kWords = 16;  // CPUs 0..1023; higher ones are left out of the comparison
  at::Tensor mine = at::zeros({kWords + 2}, at::kLong);
  auto* words = mine.data_ptr<int64_t>();
  for (int cpu : mine_cpus) {
    if (cpu < 64 * kWords) words[2 + cpu / 64] |= static_cast<int64_t>(uint64_t{1} << (cpu % 64));
  }
  words[0] = runtime.local_rank();
  words[1] = static_cast<int64_t>(std::hash<std::string>{}(runtime.hostname()) & 0x7fffffff);
  const at::Tensor all = mpi_world().all_gather(mine);  // every rank takes part, whatever failed above
  int same_node = 0;
  for (int64_t r = 0; r < all.size(0); ++r) {
    const at::Tensor other = all[r].contiguous();
    const auto* bits = other.data_ptr<int64_t>();
    if (bits[1] != words[1]) continue;
    ++same_node;
    std::vector<int> cpus, expected;
    for (int cpu = 0; cpu < 64 * kWords; ++cpu) {
      if (static_cast<uint64_t>(bits[2 + cpu / 64]) >> (cpu % 64) & 1U) cpus.push_back(cpu);
    }
    for (int cpu : local.at(static_cast<size_t>(bits[0]))) {
      if (cpu < 64 * kWords) expected.push_back(cpu);
    }
    EXPECT_EQ(expected, cpus) << "local rank " << bits[0];
  }
  EXPECT_EQ(same_node, runtime.local_size());
  const char* bound = std::getenv("CMAF_EXPECT_BOUND_CPUS");
  if (bound != nullptr && std::string(bound) == "1") {
    EXPECT_EQ(runtime.allowed_cpu_count(), 1);
    for (size_t a = 0; a < local.size(); ++a) {
      for (size_t b = a + 1; b < local.size(); ++b) {
        std::vector<int> both;
        std::set_intersection(local[a].begin(), local[a].end(), local[b].begin(), local[b].end(),
                              std::back_inserter(both));
        EXPECT_TRUE(both.empty()) << "local ranks " << a << " and " << b << " share CPU " << both.front();
      }
    }
  }
}

TEST(Mpi, AllReduce) { check_all_reduce(mpi_world()); }
TEST(Mpi, BroadcastGatherBarrier) { check_broadcast_gather_barrier(mpi_world()); }
TEST(Mpi, AsyncCollectivesCompleteInIssueOrder) { check_async_order(mpi_world()); }
TEST(Mpi, ParameterBroadcastAndFingerprints) { check_parameter_sync(mpi_world()); }
TEST(Mpi, ReducersAgreeWithBucketsSmallerThanOneTensor) {
  cluster::BucketOptions tiny;
  tiny.first_bucket_bytes = 16;
  tiny.bucket_bytes = 16;
  check_reducers_agree(mpi_world(), tiny);
}
TEST(Mpi, ReducersAgreeWithManyTensorsPerBucket) { check_reducers_agree(mpi_world(), {}); }
TEST(Mpi, SameSeededTensorsAgreeWithTheLocalBackend) { check_matches_local_backend(mpi_world()); }
TEST(Mpi, Bf16WireReducerAveragesRoundedShares) { check_bf16_wire_reducer(mpi_world()); }

// A collective's MPI call that fails (injected on the last rank after MPI_Barrier returned, so the
// ranks are still in step): that rank's barrier throws the call's error, and every later
// collective on that communicator fails at once, naming it, without reaching MPI (no peer issues
// them: one that reached MPI would wait for the stall limit). Other communicators go on.
TEST(MpiFailure, CollectivesAfterAFailedMpiCallFailAtOnce) {
  cluster::MpiCommunicator second(MPI_COMM_WORLD);
  const bool failing = second.rank() == second.size() - 1;
  if (failing) cluster::fail_mpi_calls_for_testing(1);
  std::string first_error;
  try {
    second.barrier();
  } catch (const cluster::ClusterError& e) {
    first_error = e.what();
  }
  if (!failing) {
    EXPECT_EQ(first_error, "");
  } else {
    EXPECT_NE(first_error.find("MPI_Barrier failed"), std::string::npos) << first_error;
    const auto expect_refused = [&](const std::function<void()>& collective, const std::string& what) {
      try {
        collective();
        ADD_FAILURE() << what << ": no error";
      } catch (const cluster::ClusterError& e) {
        const std::string text = e.what();
        EXPECT_NE(text.find("not started: an earlier collective on this communicator failed"), std::string::npos)
            << what << ": " << text;
        EXPECT_NE(text.find("collective on this communicator failed ([rank " + std::to_string(second.rank()) +
                            " on " + mpi_runtime().hostname() + "] MPI_Barrier failed: "),
                  std::string::npos)
            << what << ": " << text;
      }
    };
    at::Tensor sum = at::ones({8});
    expect_refused([&] { second.all_reduce(sum, cluster::ReduceOp::kSum); }, "float sum");
    EXPECT_TRUE(at::equal(sum, at::ones({8})));
    at::Tensor longs = at::ones({8}, at::kLong);
    expect_refused([&] { second.all_reduce(longs, cluster::ReduceOp::kMax); }, "int64 max");
    expect_refused([&] { second.broadcast_async(at::ones({4}), 0)->wait(); }, "broadcast");
    expect_refused([&] { second.barrier(); }, "barrier");
  }
  at::Tensor count = at::ones({4});
  mpi_world().all_reduce(count, cluster::ReduceOp::kSum);
  EXPECT_TRUE(count.eq(mpi_world().size()).all().item<bool>()) << count;
}

}  // namespace
}  // namespace cmaf::test
