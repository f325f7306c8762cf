// The same checks as local_communicator_test.cpp, as real processes over MPI.
#include <gtest/gtest.h>

#include "tests/cluster/collective_checks.h"
#include "tests/cluster/mpi_world.h"

namespace cmaf::test {
namespace {

TEST(Mpi, WorldHasTheLaunchedSize) {
  EXPECT_GE(mpi_world().size(), 2);
  EXPECT_EQ(mpi_world().name(), "mpi");
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
