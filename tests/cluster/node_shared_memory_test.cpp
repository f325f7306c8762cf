// The MPI backend's node shared-memory sums, as real processes (mpirun -np 2 and 3 on one node;
// ctest also runs the suite with CMAF_NODE_SHARED_MEMORY=0, where the same sums must go
// through MPI_Allreduce, and with CMAF_SIMULATED_RANKS_PER_NODE: at -np 4 and 6, two and three
// nodes of two ranks, the hierarchical sum; at -np 3, nodes of 2 and 1 ranks, and at -np 2,
// nodes of one rank: MPI_Allreduce; and under local_nodes.sh, on OpenMPI nodes with their own
// daemons and host names, ranks in a row or round robin). The expected layout comes from the
// ranks' host names, not from MPI. Also: a constructor that fails half-way frees what it made.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "cluster/cluster_error.h"
#include "cluster/mpi_communicator.h"
#include "cluster/mpi_thread.h"
#include "cluster/node_shared_memory.h"
#include "cluster/process_runtime.h"
#include "tests/cluster/mpi_world.h"

namespace cmaf::test {
namespace {
using cluster::ReduceOp;

bool disabled_by_environment() {
  const char* value = std::getenv("CMAF_NODE_SHARED_MEMORY");
  return value != nullptr && std::strcmp(value, "0") == 0;
}

int simulated_ranks_per_node() {
  const char* value = std::getenv("CMAF_SIMULATED_RANKS_PER_NODE");
  return value == nullptr ? 0 : std::atoi(value);
}

cluster::MpiCommunicator& world() { return dynamic_cast<cluster::MpiCommunicator&>(mpi_world()); }

// The nodes as the test works them out: ranks with the same host name share a node (in rank
// order), and CMAF_SIMULATED_RANKS_PER_NODE=k cuts each host's ranks into nodes of k.
struct Layout {
  std::vector<std::vector<int>> nodes;  // each node's world ranks, in node-rank order
  int node_of_rank = 0;                 // this rank's node
  int node_rank = 0;
};

Layout expected_layout() {
  constexpr int kHostBytes = 256;
  std::array<char, kHostBytes> mine{};
  std::strncpy(mine.data(), cluster::host_name().c_str(), kHostBytes - 1);
  const int n = world().size();
  std::vector<char> hosts(static_cast<size_t>(n) * kHostBytes);
  cluster::mpi_allgather(mine.data(), kHostBytes, MPI_CHAR, hosts.data(), kHostBytes, MPI_CHAR, MPI_COMM_WORLD);
  const int k = simulated_ranks_per_node();
  Layout layout;
  std::map<std::string, int> seen_on_host;  // ranks so far on each host
  std::map<std::string, size_t> node_of_key;  // "host#i": the i-th node of k ranks on that host
  for (int r = 0; r < n; ++r) {
    const std::string host(&hosts[static_cast<size_t>(r) * kHostBytes]);
    const int before = seen_on_host[host]++;
    const std::string key = host + "#" + std::to_string(k > 0 ? before / k : 0);
    const auto [found, added] = node_of_key.emplace(key, layout.nodes.size());
    if (added) layout.nodes.emplace_back();
    const size_t node = found->second;
    if (r == world().rank()) {
      layout.node_of_rank = static_cast<int>(node);
      layout.node_rank = static_cast<int>(layout.nodes[node].size());
    }
    layout.nodes[node].push_back(r);
  }
  return layout;
}

// The local backend's sum: rank 0's tensor, plus rank 1's, plus rank 2's ...
at::Tensor rank_order_sum(const at::Tensor& everyone) {
  at::Tensor acc = everyone[0].clone();
  for (int64_t r = 1; r < everyone.size(0); ++r) acc.add_(everyone[r]);
  return acc;
}

// The sum over nodes of each node's rank-order sum (the hierarchical sum; with one node the
// local backend's sum).
at::Tensor node_order_sum(const at::Tensor& everyone, const Layout& layout) {
  at::Tensor total;
  for (const std::vector<int>& members : layout.nodes) {
    std::vector<int64_t> index(members.begin(), members.end());
    const at::Tensor node = rank_order_sum(everyone.index_select(0, at::tensor(index)));
    total = total.defined() ? total.add_(node) : node;
  }
  return total;
}

TEST(MpiNodeSharedMemory, OnWhenEveryNodeHoldsTheSameRanksUnlessSwitchedOff) {
  const Layout layout = expected_layout();
  const std::vector<int>& node = layout.nodes[static_cast<size_t>(layout.node_of_rank)];
  EXPECT_EQ(world().nodes(), static_cast<int>(layout.nodes.size()));
  EXPECT_EQ(world().node_rank(), layout.node_rank);
  EXPECT_EQ(world().node_size(), static_cast<int>(node.size()));
  bool uniform = node.size() > 1;
  for (const std::vector<int>& other : layout.nodes) uniform = uniform && other.size() == node.size();
  EXPECT_EQ(world().node_shared_memory(), uniform && !disabled_by_environment());
}

TEST(MpiNodeSharedMemory, EveryRankGetsTheSameBits) {
  // Whatever the path (one node, several, MPI): the ranks' results agree bit for bit, so their
  // parameters (and Lagrange multipliers) stay identical.
  for (at::ScalarType type : {at::kFloat, at::kDouble}) {
    for (int64_t elements : {int64_t{3}, int64_t{70001}, int64_t{1500001}}) {
      at::Generator generator = at::detail::createCPUGenerator(40 + static_cast<uint64_t>(world().rank()));
      at::Tensor plain = at::randn({elements}, generator, at::TensorOptions().dtype(type));
      at::Tensor buffer = world().new_buffer(elements, at::TensorOptions().dtype(type));
      buffer.copy_(plain);
      world().all_reduce(plain, ReduceOp::kAvg);
      world().all_reduce(buffer, ReduceOp::kSum);
      for (const at::Tensor& result : {plain, buffer}) {
        const at::Tensor everyone = world().all_gather(result);
        for (int64_t r = 1; r < everyone.size(0); ++r) {
          EXPECT_TRUE(at::equal(everyone[r], everyone[0])) << "rank " << r << " vs rank 0, " << elements;
        }
      }
    }
  }
}

TEST(MpiNodeSharedMemory, SumsGiveTheBitsOfTheRankOrderSum) {
  // Sizes: one element, an odd size that splits unevenly, and more than the 4 MiB staging block.
  const Layout layout = expected_layout();
  for (at::ScalarType type : {at::kFloat, at::kDouble}) {
    for (int64_t elements : {int64_t{1}, int64_t{4099}, int64_t{1500001}}) {
      at::Generator generator = at::detail::createCPUGenerator(900 + static_cast<uint64_t>(world().rank()));
      const at::Tensor mine = at::randn({elements}, generator, at::TensorOptions().dtype(type));
      const bool several_nodes = world().node_shared_memory() && world().nodes() > 1;
      const at::Tensor everyone = world().all_gather(mine);
      const at::Tensor expected = several_nodes ? node_order_sum(everyone, layout) : rank_order_sum(everyone);
      at::Tensor plain = mine.clone();  // staged
      world().all_reduce(plain, ReduceOp::kSum);
      at::Tensor buffer = world().new_buffer(elements, at::TensorOptions().dtype(type));  // in place
      EXPECT_TRUE(buffer.eq(0).all().item<bool>()) << "new_buffer is zeroed";
      EXPECT_EQ(world().in_node_shared_memory(buffer), world().node_shared_memory());
      buffer.copy_(mine);
      world().all_reduce(buffer, ReduceOp::kSum);
      // Exact: one node (rank order), two nodes (a + b is b + a), or 2 ranks through MPI.
      if ((world().node_shared_memory() && world().nodes() <= 2) || world().size() <= 2) {
        EXPECT_TRUE(at::equal(plain, expected)) << at::toString(type) << " " << elements << " staged";
        EXPECT_TRUE(at::equal(buffer, expected)) << at::toString(type) << " " << elements << " in place";
      } else {  // MPI_Allreduce of 3 or more: its own order
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

// A rank that passes another tensor than its peers (size, dtype, or a node shared buffer against
// a plain tensor) gets a ClusterError naming every side, on every rank, instead of a sum that
// mixes unrelated memory; its tensor is left as it was, and the next collective works. Every
// node has a rank that differs (the node's first); the next test has one node's ranks differ.
TEST(MpiNodeSharedMemory, RanksThatPassDifferentTensorsAllGetAnError) {
  if (!world().node_shared_memory()) GTEST_SKIP() << "sums go through MPI_Allreduce here";
  const int r = world().rank();
  const bool first = world().node_rank() == 0;
  const auto expect_refused = [&](at::Tensor tensor, const std::string& mine, const std::string& what) {
    const at::Tensor before = tensor.clone();
    try {
      world().all_reduce(tensor, ReduceOp::kSum);
      ADD_FAILURE() << what << ": no error";
    } catch (const cluster::ClusterError& e) {
      const std::string text = e.what();
      EXPECT_NE(text.find("passed different tensors"), std::string::npos) << what << ": " << text;
      EXPECT_NE(text.find("rank " + std::to_string(r) + ": collective #"), std::string::npos) << what << ": " << text;
      EXPECT_NE(text.find(mine), std::string::npos) << what << ": " << text;
    }
    EXPECT_TRUE(at::equal(tensor, before)) << what << ": changed";
  };
  // Sizes that differ by rank, within one staging chunk and by more than the 4 MiB chunk.
  for (int64_t base : {int64_t{100}, int64_t{1500000}}) {
    const int64_t elements = base + 16 * r;
    expect_refused(at::full({elements}, 1.0f), std::to_string(elements * 4) + " bytes of Float through the staging block",
                   "sizes by rank");
  }
  // The same bytes, another dtype on each node's first rank.
  expect_refused(first ? at::ones({64}, at::kDouble) : at::ones({128}, at::kFloat),
                 first ? "512 bytes of Double" : "512 bytes of Float", "dtype");
  // Each node's first rank sums a node shared buffer, the others a plain tensor.
  at::Tensor buffer = world().new_buffer(256, at::TensorOptions().dtype(at::kFloat));
  expect_refused(first ? buffer : at::zeros({256}), first ? "in node shared buffer #" : "through the staging block",
                 "buffer against plain");
  // The communicator is still in step: a sum that agrees works.
  at::Tensor sum = at::full({1000}, r + 1.0f);
  world().all_reduce(sum, ReduceOp::kSum);
  const int n = world().size();
  EXPECT_TRUE(sum.eq(n * (n + 1) / 2.0f).all().item<bool>());
}

// On several nodes, when only the last node's ranks differ, the other nodes' ranks do not go on
// to the sum between nodes (where they would wait for the stall limit): they get an error saying
// that another node's ranks differed, every tensor stays as it was, and the communicator is still
// in step. Likewise when each node agrees within itself but the nodes pass different sizes.
TEST(MpiNodeSharedMemory, ANodeWhoseRanksDifferMakesEveryNodeFail) {
  if (!world().node_shared_memory() || world().nodes() < 2) GTEST_SKIP() << "needs the hierarchical sum";
  const Layout layout = expected_layout();
  const bool last_node = layout.node_of_rank == static_cast<int>(layout.nodes.size()) - 1;
  const bool odd_one = last_node && world().node_rank() == 0;
  at::Tensor buffer = world().new_buffer(2000, at::TensorOptions().dtype(at::kFloat));
  for (const bool in_buffer : {false, true}) {
    at::Tensor tensor = in_buffer ? buffer : at::full({2000}, 1.0f);
    if (odd_one) tensor = in_buffer ? buffer.narrow(0, 0, 1000) : at::full({1000}, 1.0f);  // other bytes
    tensor.fill_(world().rank() + 1.0f);
    const at::Tensor before = tensor.clone();
    try {
      world().all_reduce(tensor, ReduceOp::kSum);
      ADD_FAILURE() << "rank " << world().rank() << ": no error";
    } catch (const cluster::ClusterError& e) {
      const std::string text = e.what();
      const std::string expected = last_node ? "the ranks of this node passed different tensors"
                                             : "the ranks of another node passed different tensors";
      EXPECT_NE(text.find(expected), std::string::npos) << "rank " << world().rank() << ": " << text;
    }
    EXPECT_TRUE(at::equal(tensor, before)) << "rank " << world().rank() << ": changed";
  }
  // Every rank of the last node passes 1000 floats, every other rank 2000: each node agrees
  // within itself, but the nodes would cut their sums into different slices.
  at::Tensor tensor = at::full({last_node ? 1000 : 2000}, world().rank() + 1.0f);
  const at::Tensor before = tensor.clone();
  try {
    world().all_reduce(tensor, ReduceOp::kSum);
    ADD_FAILURE() << "rank " << world().rank() << ": no error when the nodes differ";
  } catch (const cluster::ClusterError& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find("the nodes passed different tensors"), std::string::npos) << text;
    EXPECT_NE(text.find("4000 to 8000 bytes"), std::string::npos) << text;
  }
  EXPECT_TRUE(at::equal(tensor, before)) << "rank " << world().rank() << ": changed";
  at::Tensor sum = at::full({1000}, world().rank() + 1.0f);
  world().all_reduce(sum, ReduceOp::kSum);
  const int n = world().size();
  EXPECT_TRUE(sum.eq(n * (n + 1) / 2.0f).all().item<bool>());
}

// On several nodes, rank 0's MPI_Allreduce between nodes fails (after its nodes' agreement, the
// sum's first call between nodes): rank 0 gets the MPI error, and the other ranks of its node,
// which have summed their slices and wait for its slice, fail with it, naming rank 0, instead of
// waiting for the stall limit or returning an incomplete sum. Later collectives on the
// communicator fail at once on that node; the other nodes' ranks (whose calls did succeed) get the
// sum.
TEST(MpiNodeSharedMemory, AFailedCallBetweenNodesFailsTheWholeNode) {
  if (!world().node_shared_memory() || world().nodes() < 2) GTEST_SKIP() << "needs the hierarchical sum";
  const Layout layout = expected_layout();
  {
    cluster::MpiCommunicator second(MPI_COMM_WORLD);
    ASSERT_TRUE(second.node_shared_memory());
    const bool node_of_rank_0 = layout.node_of_rank == 0;
    if (second.rank() == 0) cluster::fail_mpi_calls_for_testing(1, /*after=*/1);
    at::Tensor sum = at::full({1000}, second.rank() + 1.0f);
    std::string error;
    try {
      second.all_reduce(sum, ReduceOp::kSum);
    } catch (const cluster::ClusterError& e) {
      error = e.what();
    }
    cluster::fail_mpi_calls_for_testing(0);
    const int n = second.size();
    if (!node_of_rank_0) {
      EXPECT_EQ(error, "") << "rank " << second.rank();
      EXPECT_TRUE(sum.eq(n * (n + 1) / 2.0f).all().item<bool>()) << "rank " << second.rank();
    } else if (second.rank() == 0) {
      EXPECT_NE(error.find("MPI_Allreduce (between nodes) failed"), std::string::npos) << error;
    } else {
      EXPECT_NE(error.find("rank 0 on this node failed in its MPI call between nodes"), std::string::npos)
          << "rank " << second.rank() << ": " << error;
    }
    if (node_of_rank_0) {
      try {
        second.all_reduce(sum, ReduceOp::kSum);
        ADD_FAILURE() << "rank " << second.rank() << ": a collective after the failure went ahead";
      } catch (const cluster::ClusterError& e) {
        EXPECT_NE(std::string(e.what()).find("not started: an earlier collective on this communicator failed"),
                  std::string::npos) << e.what();
      }
    }
  }
  at::Tensor count = at::ones({4});
  world().all_reduce(count, ReduceOp::kSum);
  EXPECT_TRUE(count.eq(world().size()).all().item<bool>()) << count;
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

TEST(MpiNodeSharedMemory, ANodeThatCannotMapMakesEveryNodeFallBack) {
  // The ranks of the last node cannot map (as with a full /dev/shm there): no rank may keep
  // its shared buffer, or the nodes would run different collectives (a bucket in place against
  // one staged in 4 MiB pieces) and hang. On one node, that node is every rank.
  const int n = world().size();
  const Layout layout = expected_layout();
  const bool last_node = layout.node_of_rank == static_cast<int>(layout.nodes.size()) - 1;
  if (last_node) cluster::fail_shared_memory_maps_for_testing(1);
  const int64_t elements = 1500001;  // more than the staging block
  at::Tensor buffer = world().new_buffer(elements, at::TensorOptions().dtype(at::kFloat));
  cluster::fail_shared_memory_maps_for_testing(0);  // also when no map was tried (path off)
  EXPECT_FALSE(world().in_node_shared_memory(buffer)) << "rank " << world().rank();
  buffer.fill_(world().rank() + 1.0);
  world().all_reduce(buffer, ReduceOp::kSum);
  EXPECT_TRUE(buffer.eq(n * (n + 1) / 2.0f).all().item<bool>());
  // The next buffer maps again where the path is on.
  const at::Tensor next = world().new_buffer(elements, at::TensorOptions().dtype(at::kFloat));
  EXPECT_EQ(world().in_node_shared_memory(next), world().node_shared_memory());
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
  // Over a communicator of pairs of ranks (as a node's), the second of each pair cannot map: its
  // error names its world rank, not its place in the pair (at -np 4, rank 3, not 1).
  MPI_Comm pairs = MPI_COMM_NULL;
  ASSERT_EQ(cluster::mpi_comm_split(MPI_COMM_WORLD, world().rank() / 2, world().rank(), &pairs), MPI_SUCCESS);
  const bool second = world().rank() % 2 == 1;
  const bool alone = !second && world().rank() + 1 == world().size();  // the last rank of an odd count
  why.clear();
  const int64_t bytes_here = second ? (int64_t{1} << 56) : 4096;
  const auto pair_segment = cluster::SharedSegment::map(pairs, bytes_here, &why, world().rank());
  EXPECT_EQ(pair_segment == nullptr, !alone) << "rank " << world().rank() << ": " << why;
  if (second) {
    EXPECT_NE(why.find("[rank " + std::to_string(world().rank()) + " on "), std::string::npos) << why;
  }
  cluster::mpi_run([&] { MPI_Comm_free(&pairs); });
}

// The number MPI gives the next communicator. OpenMPI numbers communicators by the lowest free
// slot of its handle table, so one that was never freed shows as a higher number here.
int next_communicator_number() {
  int number = 0;
  cluster::mpi_run([&] {
    MPI_Comm probe = MPI_COMM_NULL;
    MPI_Comm_dup(MPI_COMM_WORLD, &probe);
    number = MPI_Comm_c2f(probe);
    MPI_Comm_free(&probe);
  });
  return number;
}

// CMAF_NODE_SHARED_MEMORY takes 0 or 1: "off" (which used to mean on) is an error naming it, on
// every rank, and leaves no communicator behind. Set on one rank only (mpirun passes a variable
// to other hosts only with -x), every rank fails at once: the others are not left waiting for it
// in the set-up's next collective until the stall limit.
TEST(MpiCommunicatorSetup, ANodeSharedMemorySettingOtherThan0Or1IsRefused) {
  const char* set = std::getenv("CMAF_NODE_SHARED_MEMORY");
  const std::string saved = set == nullptr ? "" : set;
  const int before = next_communicator_number();
  const int last = world().size() - 1;
  for (const bool everywhere : {true, false}) {
    const bool has_it = everywhere || world().rank() == last;
    if (has_it) setenv("CMAF_NODE_SHARED_MEMORY", "off", 1);
    try {
      cluster::MpiCommunicator refused(MPI_COMM_WORLD);
      ADD_FAILURE() << "rank " << world().rank() << ": CMAF_NODE_SHARED_MEMORY=off accepted";
    } catch (const cluster::ClusterError& error) {
      const std::string text = error.what();
      EXPECT_NE(text.find("[rank " + std::to_string(world().rank()) + " on "), std::string::npos) << text;
      if (has_it) {
        EXPECT_NE(text.find("CMAF_NODE_SHARED_MEMORY=off: expected 0"), std::string::npos) << text;
      } else {
        EXPECT_NE(text.find("CMAF_NODE_SHARED_MEMORY is neither 0 nor 1 on another rank"), std::string::npos) << text;
      }
    }
    if (set == nullptr) {
      unsetenv("CMAF_NODE_SHARED_MEMORY");
    } else {
      setenv("CMAF_NODE_SHARED_MEMORY", saved.c_str(), 1);
    }
  }
  EXPECT_EQ(next_communicator_number(), before) << "rank " << world().rank() << ": communicators left behind";
}

// A communicator of one rank (MPI_COMM_SELF; a job of one process) has no node memory to set up,
// but refuses the same settings as a larger one: a typo is found before the job grows.
TEST(MpiCommunicatorSetup, OneRankRefusesTheSettingsMoreRanksWould) {
  const int before = next_communicator_number();
  for (const char* variable : {"CMAF_NODE_SHARED_MEMORY", "CMAF_SIMULATED_RANKS_PER_NODE"}) {
    const char* set = std::getenv(variable);
    const std::string saved = set == nullptr ? "" : set;
    setenv(variable, "off", 1);
    try {
      cluster::MpiCommunicator refused(MPI_COMM_SELF);
      ADD_FAILURE() << "rank " << world().rank() << ": " << variable << "=off accepted on one rank";
    } catch (const std::exception& error) {
      EXPECT_NE(std::string(error.what()).find(std::string(variable) + "=off: expected "), std::string::npos)
          << error.what();
    }
    if (set == nullptr) {
      unsetenv(variable);
    } else {
      setenv(variable, saved.c_str(), 1);
    }
  }
  EXPECT_EQ(next_communicator_number(), before) << "rank " << world().rank() << ": communicators left behind";
  { cluster::MpiCommunicator alone(MPI_COMM_SELF); }
  EXPECT_EQ(next_communicator_number(), before) << "rank " << world().rank() << ": a destroyed one left some";
}

TEST(MpiCommunicatorSetup, AConstructorThatThrowsLeavesNoCommunicatorBehind) {
  // CMAF_SIMULATED_RANKS_PER_NODE that differs between ranks: every rank's constructor throws
  // after it has made its duplicate of the parent, its node communicator and its bf16 ops.
  const char* set = std::getenv("CMAF_SIMULATED_RANKS_PER_NODE");
  const std::string saved = set == nullptr ? "" : set;
  const int before = next_communicator_number();
  for (int attempt = 0; attempt < 5; ++attempt) {
    setenv("CMAF_SIMULATED_RANKS_PER_NODE", world().rank() == 0 ? "1" : "2", 1);
    try {
      cluster::MpiCommunicator failing(MPI_COMM_WORLD);
      ADD_FAILURE() << "rank " << world().rank()
                    << ": constructed with differing CMAF_SIMULATED_RANKS_PER_NODE";
    } catch (const std::exception& error) {
      const std::string what = error.what();
      EXPECT_NE(what.find("must be the same on every rank: found 1 to 2"), std::string::npos) << what;
    }
  }
  if (set == nullptr) {
    unsetenv("CMAF_SIMULATED_RANKS_PER_NODE");
  } else {
    setenv("CMAF_SIMULATED_RANKS_PER_NODE", saved.c_str(), 1);
  }
  EXPECT_EQ(next_communicator_number(), before) << "rank " << world().rank() << ": communicators left behind";
  { cluster::MpiCommunicator working(MPI_COMM_WORLD); }
  EXPECT_EQ(next_communicator_number(), before) << "rank " << world().rank() << ": a destroyed one left some";
}

}  // namespace
}  // namespace cmaf::test
