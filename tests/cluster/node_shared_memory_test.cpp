// The MPI backend's node shared-memory sums, as real processes (mpirun -np 2 and 3 on one node;
// ctest also runs the suite with CMAF_NODE_SHARED_MEMORY=0, where the same sums must go
// through MPI_Allreduce).
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "cluster/mpi_communicator.h"
#include "cluster/node_shared_memory.h"
#include "tests/cluster/mpi_world.h"

namespace cmaf::test {
namespace {
using cluster::ReduceOp;

bool disabled_by_environment() {
  const char* value = std::getenv("CMAF_NODE_SHARED_MEMORY");
  return value != nullptr && std::strcmp(value, "0") == 0;
}

cluster::MpiCommunicator& world() { return dynamic_cast<cluster::MpiCommunicator&>(mpi_world()); }

// The local backend's sum: rank 0's tensor, plus rank 1's, plus rank 2's ...
at::Tensor rank_order_sum(const at::Tensor& everyone) {
  at::Tensor acc = everyone[0].clone();
  for (int64_t r = 1; r < everyone.size(0); ++r) acc.add_(everyone[r]);
  return acc;
}

TEST(MpiNodeSharedMemory, OnWhenAllRanksShareANodeUnlessSwitchedOff) {
  // ctest runs on one machine: every rank is on this node.
  EXPECT_EQ(world().node_shared_memory(), !disabled_by_environment());
}

TEST(MpiNodeSharedMemory, SumsGiveTheBitsOfTheRankOrderSum) {
  // Sizes: one element, an odd size that splits unevenly, and more than the 4 MiB staging block.
  for (at::ScalarType type : {at::kFloat, at::kDouble}) {
    for (int64_t elements : {int64_t{1}, int64_t{4099}, int64_t{1500001}}) {
      at::Generator generator = at::detail::createCPUGenerator(900 + static_cast<uint64_t>(world().rank()));
      const at::Tensor mine = at::randn({elements}, generator, at::TensorOptions().dtype(type));
      const at::Tensor expected = rank_order_sum(world().all_gather(mine));
      at::Tensor plain = mine.clone();  // staged
      world().all_reduce(plain, ReduceOp::kSum);
      at::Tensor buffer = world().new_buffer(elements, at::TensorOptions().dtype(type));  // in place
      EXPECT_TRUE(buffer.eq(0).all().item<bool>()) << "new_buffer is zeroed";
      buffer.copy_(mine);
      world().all_reduce(buffer, ReduceOp::kSum);
      if (world().node_shared_memory() || world().size() <= 2) {
        EXPECT_TRUE(at::equal(plain, expected)) << at::toString(type) << " " << elements << " staged";
        EXPECT_TRUE(at::equal(buffer, expected)) << at::toString(type) << " " << elements << " in place";
      } else {  // MPI_Allreduce with 3 ranks: its own order
        EXPECT_TRUE(at::allclose(plain, expected, 1e-5, 1e-6)) << at::toString(type) << " " << elements;
        EXPECT_TRUE(at::allclose(buffer, expected, 1e-5, 1e-6)) << at::toString(type) << " " << elements;
      }
    }
  }
}

TEST(MpiNodeSharedMemory, ViewsIntoABufferAndAveragesAreReducedInPlace) {
  const int n = world().size();
  at::Tensor buffer = world().new_buffer(1000, at::TensorOptions().dtype(at::kFloat));
  buffer.fill_(-1.0);
  at::Tensor middle = buffer.slice(0, 100, 357);  // an offset, an odd length
  middle.fill_(world().rank() + 1.0);
  world().all_reduce(middle, ReduceOp::kAvg);
  EXPECT_TRUE(middle.eq((n + 1) / 2.0f).all().item<bool>());
  EXPECT_TRUE(buffer.slice(0, 0, 100).eq(-1.0).all().item<bool>()) << "outside the view: untouched";
  EXPECT_TRUE(buffer.slice(0, 357).eq(-1.0).all().item<bool>()) << "outside the view: untouched";
  // Max and int64 still go through MPI.
  at::Tensor max = at::full({7}, static_cast<float>(world().rank()));
  world().all_reduce(max, ReduceOp::kMax);
  EXPECT_TRUE(max.eq(n - 1.0f).all().item<bool>());
}

TEST(MpiNodeSharedMemory, ABufferOutlivesItsCommunicator) {
  // A gradient that still views a bucket after the reducer and the communicator are gone.
  at::Tensor kept;
  {
    cluster::MpiCommunicator second(MPI_COMM_WORLD);
    kept = second.new_buffer(64, at::TensorOptions().dtype(at::kFloat));
    kept.fill_(second.rank() + 1.0);
    second.all_reduce(kept, ReduceOp::kSum);
  }
  const int n = world().size();
  EXPECT_TRUE(kept.eq(n * (n + 1) / 2.0f).all().item<bool>());
  kept.mul_(2.0);  // still mapped, still writable
  EXPECT_EQ(kept[63].item<float>(), n * (n + 1.0f));
}

TEST(MpiNodeSharedMemory, ARankThatCannotMapMakesEveryRankFallBack) {
  // Rank 1 asks for more than any tmpfs holds: no rank gets a segment, each says why.
  const int64_t bytes = world().rank() == 1 ? (int64_t{1} << 56) : 4096;
  std::string why;
  const auto segment = cluster::SharedSegment::map(MPI_COMM_WORLD, bytes, &why);
  EXPECT_EQ(segment, nullptr);
  if (world().rank() == 1) {
    EXPECT_NE(why.find("posix_fallocate of 72057594037927936 bytes"), std::string::npos) << why;
  } else {
    EXPECT_NE(why.find("another rank could not map"), std::string::npos) << why;
  }
}

}  // namespace
}  // namespace cmaf::test
