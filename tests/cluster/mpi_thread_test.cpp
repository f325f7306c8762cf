// The MPI thread (cluster/mpi_thread.h) under the thread level the test job asked for
// (CMAF_MPI_THREAD_LEVEL): at multiple, every thread calls MPI; below it, every call goes
// through the MPI thread, which the MPI audit (mpi_thread_audit.h) checks call by call.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include "cluster/cluster_error.h"
#include "cluster/mpi_communicator.h"
#include "cluster/mpi_thread.h"
#include "tests/cluster/mpi_thread_audit.h"
#include "tests/cluster/mpi_world.h"

namespace cmaf::test {
namespace {

TEST(MpiThread, TheLevelIsTheOneAskedFor) {
  const int asked = cluster::requested_mpi_thread_level();
  // OpenMPI gives the level asked for (so a funneled job really runs funnelled, and the audit
  // below checks something); another MPI may give more, never less.
#ifdef OPEN_MPI
  EXPECT_EQ(mpi_runtime().mpi_thread_level(), asked);
#else
  EXPECT_GE(mpi_runtime().mpi_thread_level(), asked);
#endif
  EXPECT_EQ(cluster::mpi_thread_level(), mpi_runtime().mpi_thread_level());
  EXPECT_EQ(cluster::mpi_funnelled(), mpi_runtime().mpi_thread_level() < MPI_THREAD_MULTIPLE);
  const std::string line = mpi_runtime().describe();
  EXPECT_NE(line.find("MPI (thread level " + cluster::mpi_thread_level_name(mpi_runtime().mpi_thread_level())),
            std::string::npos)
      << line;
  EXPECT_EQ(line.find("every MPI call on one thread") != std::string::npos, cluster::mpi_funnelled()) << line;
}

TEST(MpiThread, TheAuditSeesEveryCallAndWhereItIsMade) {
  const int64_t violations = mpi_audit_violations();
  const int64_t blocking = mpi_audit_calls("Allreduce");
  const int64_t non_blocking = mpi_audit_calls("Iallreduce");
  at::Tensor value = at::full({5}, static_cast<int64_t>(mpi_world().rank() + 1), at::kLong);
  mpi_world().all_reduce(value, cluster::ReduceOp::kSum);  // int64: through MPI, never shared memory
  const int n = mpi_world().size();
  EXPECT_TRUE(value.eq(int64_t{n} * (n + 1) / 2).all().item<bool>());
  if (cluster::mpi_funnelled()) {
    // The non-blocking form, on the MPI thread; this thread may not call MPI, the MPI thread may.
    EXPECT_GT(mpi_audit_calls("Iallreduce"), non_blocking);
    EXPECT_EQ(mpi_audit_calls("Allreduce"), blocking);
    EXPECT_FALSE(mpi_audit_allowed_here());
    bool allowed_there = false;
    cluster::mpi_run([&] { allowed_there = mpi_audit_allowed_here(); });
    EXPECT_TRUE(allowed_there);
  } else {
    EXPECT_GT(mpi_audit_calls("Allreduce"), blocking);
    EXPECT_TRUE(mpi_audit_allowed_here());
    bool allowed_elsewhere = false;
    std::thread([&] { allowed_elsewhere = mpi_audit_allowed_here(); }).join();
    EXPECT_TRUE(allowed_elsewhere);
  }
  EXPECT_EQ(mpi_audit_violations(), violations);
}

TEST(MpiThread, TwoCommunicatorsTheRanksUseInOppositeOrders) {
  // Even ranks start on `a` then `b`, odd ranks the other way round. A funnel that ran a blocking
  // collective on its one thread would hold rank 0 in a's and rank 1 in b's: a deadlock.
  cluster::MpiCommunicator a(MPI_COMM_WORLD);
  cluster::MpiCommunicator b(MPI_COMM_WORLD);
  const int n = a.size();
  const int64_t rank = a.rank();
  at::Tensor on_a = at::full({1000}, rank, at::kLong);
  at::Tensor on_b = at::full({3}, 10 * rank, at::kLong);
  at::Tensor gathered = at::zeros({n, 3}, at::kLong);
  cluster::WorkHandle first;
  cluster::WorkHandle second;
  if (rank % 2 == 0) {
    first = a.all_reduce_async(on_a, cluster::ReduceOp::kSum);
    second = b.all_gather_async(on_b, gathered);
  } else {
    first = b.all_gather_async(on_b, gathered);
    second = a.all_reduce_async(on_a, cluster::ReduceOp::kSum);
  }
  second->wait();
  first->wait();
  EXPECT_TRUE(on_a.eq(int64_t{n} * (n - 1) / 2).all().item<bool>());
  for (int r = 0; r < n; ++r) EXPECT_TRUE(gathered[r].eq(10 * r).all().item<bool>()) << "from rank " << r;
  // And a barrier on one against a broadcast on the other.
  at::Tensor root_value = at::full({4}, rank + 7, at::kLong);
  if (rank % 2 == 0) {
    first = a.barrier_async();
    second = b.broadcast_async(root_value, n - 1);
  } else {
    first = b.broadcast_async(root_value, n - 1);
    second = a.barrier_async();
  }
  first->wait();
  second->wait();
  EXPECT_TRUE(root_value.eq(n - 1 + 7).all().item<bool>());
}

TEST(MpiThread, ASetUpWaitingForALatePeerLeavesTheMpiThreadFree) {
  // Rank 1 comes to a new communicator's set-up 2 s late. Meanwhile another thread of each other
  // rank makes an MPI call, 0.2 s into the wait: it must get through at once (funnelled, the
  // set-up's collectives wait off the MPI thread), not 1.8 s later when the set-up is over.
  // (A functional check, not a speed target: the margin is seconds against microseconds.)
  const bool late = mpi_world().rank() == 1;
  if (late) std::this_thread::sleep_for(std::chrono::seconds(2));
  std::chrono::duration<double> side_wait{0};
  std::thread side;
  if (!late) {
    side = std::thread([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      const auto start = std::chrono::steady_clock::now();
      int size = 0;
      EXPECT_EQ(cluster::mpi_call([&] { return MPI_Comm_size(MPI_COMM_WORLD, &size); }), MPI_SUCCESS);
      side_wait = std::chrono::steady_clock::now() - start;
    });
  }
  { cluster::MpiCommunicator joined(MPI_COMM_WORLD); }
  if (!late) {
    side.join();
    EXPECT_LT(side_wait.count(), 1.0) << "the other thread's MPI call waited for the set-up";
  }
}

TEST(MpiThread, ABlocksErrorReachesItsCaller) {
  EXPECT_THROW(cluster::mpi_run([] { throw cluster::ClusterError("from the block"); }), cluster::ClusterError);
  // The thread goes on afterwards.
  int size = 0;
  EXPECT_EQ(cluster::mpi_call([&] { return MPI_Comm_size(MPI_COMM_WORLD, &size); }), MPI_SUCCESS);
  EXPECT_EQ(size, mpi_world().size());
}

}  // namespace
}  // namespace cmaf::test
