// Node shared memory for the MPI backend's float sums (what NCCL and oneCCL do inside a node).
//
// A SharedSegment is one block of memory per rank, every rank's block mapped into every rank's
// address space (POSIX shm_open + mmap). No rank creates its block before every rank has entered
// (a barrier), and the names are unlinked as soon as all ranks have mapped them: a job that dies
// leaves nothing in /dev/shm unless a rank dies within those few calls. The names carry the pid, a
// counter and a random word, so jobs in other PID namespaces sharing /dev/shm (containers) do not
// collide; a name that exists all the same is retried. A sum over the ranks then needs no
// transport at all: after a barrier, rank r adds the ranks' r-th slices in rank order and
// writes the result into every rank's block; after a second barrier every block holds the sum.
// Each element is summed once, by one rank, in rank order, the order of the local backend: on
// one node the float sums of the MPI backend give the bits of the local backend at any size.
// (On several nodes MpiCommunicator sums each slice over its node with sum_into, all-reduces it
// between nodes and spreads it with copy_to_all: see mpi_communicator.h.)
//
// Freeing is local: a segment unmaps when its last tensor goes; the memory is released when the
// last rank has unmapped it. No MPI call happens in a destructor.
#pragma once

#include <mpi.h>

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cmaf::cluster {

class SharedSegment {
 public:
  // Collective over `comm` (all ranks on one node, the same `bytes` on every rank): each rank
  // maps `bytes` of its own and every peer's block. Returns nullptr on every rank when any rank cannot (no /dev/shm, too small a
  // tmpfs: the space is reserved up front with posix_fallocate, so a full tmpfs is an error here,
  // not a SIGBUS later); `why` then says what failed and where. A failing MPI call throws
  // ClusterError naming it. Errors name rank `world_rank` (-1: this rank's place in `comm`),
  // which for a node's communicator is the rank in the world, not on the node.
  static std::shared_ptr<SharedSegment> map(MPI_Comm comm, int64_t bytes, std::string* why, int world_rank = -1);
  ~SharedSegment();
  SharedSegment(const SharedSegment&) = delete;
  SharedSegment& operator=(const SharedSegment&) = delete;

  int64_t bytes() const { return bytes_; }
  char* mine() const { return blocks_[static_cast<size_t>(rank_)]; }
  char* block(int rank) const { return blocks_[static_cast<size_t>(rank)]; }
  // True when [data, data + bytes) lies inside this rank's own block.
  bool holds(const void* data, int64_t bytes) const;

 private:
  SharedSegment() = default;
  int rank_ = 0;
  int64_t bytes_ = 0;
  int64_t mapped_bytes_ = 0;
  std::vector<char*> blocks_;  // rank -> that rank's block, as mapped here (nullptr: not mapped)
};

// Tests: the next `count` calls of SharedSegment::map on this rank fail as a full /dev/shm
// would, so that a fallback agreed between nodes can be exercised on one machine.
void fail_shared_memory_maps_for_testing(int count);

// A barrier of the ranks of one node in a SharedSegment (one counter in each rank's block):
// each rank advances its own counter, wakes its waiters and waits until every peer's counter
// has reached the same generation, spinning briefly, then asleep in a futex. A rank that waits
// for a peer still in backward burns no core (MPI_Barrier's progress loop polls on the core the
// peer's or its own compute thread needs). Release/acquire: what a rank wrote before arriving
// is seen by every rank after leaving. A peer that never arrives is the stall watchdog's to
// report; a dead one ends the job through the launcher.
class NodeBarrier {
 public:
  NodeBarrier(std::shared_ptr<SharedSegment> segment, int rank, int size);
  void arrive_and_wait();
  const SharedSegment& segment() const { return *segment_; }

 private:
  std::shared_ptr<SharedSegment> segment_;
  int rank_ = 0;
  int size_ = 1;
  uint32_t generation_ = 0;  // the same on every rank: barriers are issued in the same order
};

// The part of [0, elements) whose sum rank `rank` of `size` computes: contiguous, aligned to
// 64-byte lines so that two ranks never write the same cache line.
std::pair<int64_t, int64_t> owned_range(int64_t elements, int64_t element_bytes, int rank, int size);

// slots[r] points at rank r's copy of the same elements; for i in [begin, end):
// slots[*][i] = ((slots[0][i] + slots[1][i]) + slots[2][i]) + ...  (float32 or float64).
void sum_into_all(const std::vector<char*>& slots, at::ScalarType type, int64_t begin, int64_t end);
// The same sum written into slots[dest] only (the hierarchical sum's first half; dest -1: all).
void sum_into(const std::vector<char*>& slots, at::ScalarType type, int64_t begin, int64_t end, int dest);
// slots[*][i] = slots[from][i] for i in [begin, end) (its second half).
void copy_to_all(const std::vector<char*>& slots, int64_t element_bytes, int64_t begin, int64_t end, int from);

}  // namespace cmaf::cluster
