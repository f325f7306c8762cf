// The same checks as local_communicator_test.cpp, as real processes over MPI.
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <string>

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
// node. CMAF_EXPECT_BOUND_CPUS=1 (a run under mpirun --bind-to core): the sets are disjoint, one
// CPU each, and the default thread count is 1 where the machine would give cores / ranks.
TEST(MpiRuntime, EveryLocalRanksAllowedCpus) {
  const cluster::ProcessRuntime& runtime = mpi_runtime();
  const auto& local = runtime.local_cpus();
  ASSERT_EQ(static_cast<int>(local.size()), runtime.local_size());
  EXPECT_EQ(local[static_cast<size_t>(runtime.local_rank())], cluster::allowed_cpus());
  EXPECT_EQ(runtime.allowed_cores(), static_cast<int>(cluster::allowed_cpus().size()));
  // Independently: every rank's (local rank, mask bits) through the world communicator.
  constexpr int64_t kWords = 16;  // CPUs 0..1023
  at::Tensor mine = at::zeros({kWords + 2}, at::kLong);
  for (int cpu : cluster::allowed_cpus()) {
    ASSERT_LT(cpu, 64 * kWords);
    mine[2 + cpu / 64] = mine[2 + cpu / 64].item<int64_t>() | (int64_t{1} << (cpu % 64));
  }
  mine[0] = runtime.local_rank();
  mine[1] = static_cast<int64_t>(std::hash<std::string>{}(runtime.hostname()) & 0x7fffffff);
  const at::Tensor all = mpi_world().all_gather(mine);
  int same_node = 0;
  for (int64_t r = 0; r < all.size(0); ++r) {
    const at::Tensor other = all[r];
    if (other[1].item<int64_t>() != mine[1].item<int64_t>()) continue;
    ++same_node;
    std::vector<int> cpus;
    for (int cpu = 0; cpu < 64 * kWords; ++cpu) {
      if (other[2 + cpu / 64].item<int64_t>() >> (cpu % 64) & 1) cpus.push_back(cpu);
    }
    EXPECT_EQ(local.at(static_cast<size_t>(other[0].item<int64_t>())), cpus);
  }
  EXPECT_EQ(same_node, runtime.local_size());
  const char* bound = std::getenv("CMAF_EXPECT_BOUND_CPUS");
  if (bound != nullptr && std::string(bound) == "1") {
    EXPECT_EQ(runtime.allowed_cores(), 1);
    EXPECT_EQ(cluster::default_thread_count(local, runtime.local_rank()), 1);
    for (size_t a = 0; a < local.size(); ++a) {
      for (size_t b = a + 1; b < local.size(); ++b) {
        EXPECT_NE(local[a], local[b]) << "local ranks " << a << ", " << b;
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

}  // namespace
}  // namespace cmaf::test
