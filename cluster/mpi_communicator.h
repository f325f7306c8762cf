// MPI backend for CPU tensors. Owns a duplicate of the world communicator (its traffic cannot
// mix with anyone else's), with MPI_ERRORS_RETURN so that every failing call becomes a
// ClusterError naming the call, the rank, the host and MPI's error string. All MPI calls run on
// the communicator's CommThread. bf16 tensors travel as 2 bytes an element, reduced by
// user-defined ops (cluster/bf16_wire.h): each partial sum is rounded to bf16, as NCCL does.
//
// Stall detection (HeartbeatMonitor): a collective that has waited longer than the stall limit
// is reported on every live rank with the ranks that have not arrived, and the job aborts with
// exit status kStallExitCode. Below MPI_THREAD_MULTIPLE its calls, like every other, go through
// the MPI thread (mpi_thread.h), and the collectives are MPI's non-blocking ones, so that the
// heartbeat still runs while a collective waits.
//
// Node shared memory: float32/float64 sums (and averages) do not go through MPI_Allreduce but
// through shared memory (cluster/node_shared_memory.h): buffers from new_buffer() (the reducer's
// buckets) are summed where they lie, other tensors through a staging block. One pass that reads
// every rank's copy and writes the sum into all of them, between two NodeBarriers (which sleep,
// not poll, while a peer is still computing), instead of MPI's copies through its transport. On
// one node each element is summed in rank order, so the bits are the local backend's at any rank
// count. On several nodes with the same number of ranks each, the sum is hierarchical (Horovod's
// hierarchical all-reduce): node rank i sums slice i over its node, MPI_Allreduce sums that slice
// between the node ranks i of all nodes, and the node's other ranks copy it. Every rank then gets
// the same bits (OpenMPI's MPI_Allreduce gives all members one result, which the MPI standard
// advises but does not require), not the local backend's; beyond two nodes a staged and an
// in-place sum of the same values may differ in the last bit (MPI may pick its algorithm by
// message size). Off with nodes of unequal size or one rank a node, with node_shared_memory =
// false, with CMAF_NODE_SHARED_MEMORY=0 in the environment, or (with a warning) when /dev/shm on
// any node cannot hold the blocks; then every collective is MPI's. CMAF_SIMULATED_RANKS_PER_NODE=k
// splits each real node into nodes of k ranks (tests of the several-node path on one machine).
// Before a node shared-memory sum reads a peer's copy, the ranks of the node compare what each
// is summing (collective number, dtype, bytes, which buffer and where in it): a rank that passes
// another tensor than its peers gets a ClusterError naming both sides, on every rank of the node,
// instead of a sum that mixes unrelated memory. On several nodes the nodes then compare the same
// (a 96-byte MPI_Allreduce between the node ranks i, before the slice's): when one node refuses,
// or the nodes pass different tensors, every rank of every node gets a ClusterError saying so,
// instead of waiting in the sum between nodes. (On the MPI_Allreduce path mismatched sizes are
// MPI's to report; a rank that waits for a collective its peers never issue is the stall
// watchdog's.)
//
// After an MPI call of a collective fails, MPI's state for the communicator is undefined (peers
// may be waiting in that collective or past it): every later collective on it fails at once with
// an error naming the first failure, instead of calling MPI and waiting for the stall limit. When
// the failing call is a hierarchical sum's MPI_Allreduce between nodes, the other ranks of that
// node (waiting in node shared memory for the slice) fail with it, naming the rank. (A refused
// node shared-memory sum is not such a failure: every rank stopped at the same point, and the
// communicator stays in step.)
//
// Max of float32/float64 goes through MPI with a NaN-propagating op (MPI_MAX keeps or drops a
// NaN depending on which rank holds it): a NaN on any rank gives NaN, as at::maximum and the
// local backend do.
#pragma once

#include <mpi.h>

#include <atomic>
#include <climits>
#include <memory>
#include <utility>
#include <vector>

#include "cluster/comm_thread.h"
#include "cluster/communicator.h"
#include "cluster/heartbeat_monitor.h"
#include "cluster/mpi_handle.h"
#include "cluster/node_shared_memory.h"

namespace cmaf::cluster {

struct StallOptions {
  std::chrono::milliseconds limit = kDefaultStallLimit;
  std::chrono::milliseconds heartbeat_period = kDefaultHeartbeatPeriod;
  // How long a collective waits, from its start, for ranks busy with work of their own
  // (begin_local_work) before it is a stall; 0: kBusyLimitFactor x limit.
  std::chrono::milliseconds busy_limit{0};
  // Above this many ranks the heartbeats go through rank 0 instead of all to all
  // (heartbeat_monitor.h).
  int all_to_all_ranks = kDefaultAllToAllRanks;
};
inline constexpr int kBusyLimitFactor = 10;

// MPI's text for an error code (MPI_Error_string).
std::string mpi_error_text(int code);

class MpiCommunicator : public Communicator {
 public:
  // MPI must be initialised (ProcessRuntime: MPI_THREAD_MULTIPLE, or below it the MPI thread's
  // funnel). Collective over `parent`.
  explicit MpiCommunicator(MPI_Comm parent = MPI_COMM_WORLD, StallOptions stall = {},
                           bool node_shared_memory = true);
  ~MpiCommunicator() override;

  std::string name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  WorkHandle all_reduce_async(at::Tensor tensor, ReduceOp op) override;
  WorkHandle broadcast_async(at::Tensor tensor, int root) override;
  WorkHandle all_gather_async(at::Tensor tensor, at::Tensor output) override;
  WorkHandle barrier_async() override;
  // Collective (same order and size on every rank): a zeroed buffer in node shared memory when
  // sums go there, so that all-reducing it copies nothing; else at::zeros.
  at::Tensor new_buffer(int64_t elements, const at::TensorOptions& options) override;
  void begin_local_work(const std::string& what) override;
  // A heartbeat channel of its own over these ranks, for another communicator's collectives (the
  // NCCL backend's): driven by that communicator's entered()/left(), it names the ranks a stalled
  // collective waits for, with this communicator's heartbeat period and busy limit (StallOptions;
  // a busy limit of 0 is kBusyLimitFactor x `limit`). Collective, in this communicator's order
  // (its MPI_Comm_dup runs on the communication thread); nullptr on one rank.
  std::unique_ptr<HeartbeatMonitor> new_heartbeat_monitor(std::chrono::milliseconds limit);
  // Whether float sums go through node shared memory (the same answer on every rank).
  bool node_shared_memory() const { return staging_ != nullptr; }
  // Whether `tensor` lies in one of the buffers from new_buffer() that are in node shared memory.
  bool in_node_shared_memory(const at::Tensor& tensor);
  // The nodes the ranks are on (MPI_COMM_TYPE_SHARED, or CMAF_SIMULATED_RANKS_PER_NODE), and
  // this rank's place on its node.
  int nodes() const { return nodes_; }
  int node_rank() const { return node_rank_; }
  int node_size() const { return node_size_; }

 private:
  // Throws ClusterError for a failed MPI call, and marks the communicator failed (failure_).
  // Called by the constructor and, after it, only on the communication thread.
  void check(int code, const char* call);
  // How long a collective waits for busy ranks (StallOptions::busy_limit) under stall limit `limit`.
  std::chrono::milliseconds busy_limit(std::chrono::milliseconds limit) const;
  void run_all_reduce(at::Tensor& tensor, ReduceOp op);
  // Sets the node communicator, rank and size and the node count; returns the ranks on the
  // node with fewest and on the one with most.
  std::pair<int, int> find_nodes();
  // Throws ClusterError: CMAF_NODE_SHARED_MEMORY is neither 0 nor 1 on this rank.
  [[noreturn]] void refuse_shared_memory_setting() const;
  void setup_node_shared_memory(int smallest_node, int largest_node);
  struct HeldBuffer {
    std::shared_ptr<SharedSegment> segment;  // null: none
    int64_t number = -1;
  };
  // The buffer from new_buffer() that [data, data + bytes) lies in, or null (comm thread only).
  HeldBuffer segment_holding(const char* data, int64_t bytes) const;
  // Whether `ok` holds on every node (collective over all ranks); else `why` says where not.
  bool agreed_by_all_nodes(bool ok, std::string* why);
  // What a rank sums in one node shared-memory round; every rank of the node must agree.
  struct SumDescriptor {
    int64_t sequence = 0;  // the collective's number (sequence_)
    int64_t bytes = 0;     // the whole tensor's bytes
    int64_t offset = 0;    // in-place: byte offset in the buffer; staged: the chunk's offset
    int64_t buffer = -1;   // the buffer's number from new_buffer(), -1: through the staging block
    int32_t type = 0;      // at::ScalarType
    int32_t rank = 0;      // the world rank that wrote it (for the error)
  };
  // The sum over ranks of `slots[*]` (rank r's copy at slots[r]) into all of them; throws
  // ClusterError on every rank of every node when descriptors differ (on a node, or between nodes).
  void sum_slots(const std::vector<char*>& slots, at::ScalarType type, int64_t elements, const SumDescriptor& mine);
  // Set (world rank + 1) in node rank `node_rank`'s control block when its MPI call between nodes
  // failed (sum_slots); fresh pages are zero.
  std::atomic<int32_t>* failure_word(int node_rank) const;
  void shared_memory_sum(at::Tensor& tensor);
  MPI_Op mpi_op(at::ScalarType type, ReduceOp op) const;
  static MPI_Datatype mpi_type(at::ScalarType type);  // bf16: its bit patterns (MPI_UINT16_T)
  // MPI counts are int: large tensors go in chunks of at most this many elements.
  static constexpr int64_t kMaxChunk = INT_MAX / 2;
  // Numbers the collective and tells the watchdog; the returned guard tells it the end.
  struct CollectiveScope {
    HeartbeatMonitor* monitor;
    ~CollectiveScope() {
      if (monitor) monitor->left();
    }
  };
  CollectiveScope begin_collective(const char* call, int64_t bytes);

  // Handles are members that free themselves, so that a constructor that throws half-way leaks
  // none; declared before what uses them (members go in reverse order).
  MpiComm comm_;
  MpiOp bf16_sum_;  // user-defined ops for bf16 (MPI has no such type)
  MpiOp bf16_max_;
  MpiOp float_max_;   // NaN-propagating max for float32 and float64
  MpiOp double_max_;
  int rank_ = 0;
  int size_ = 1;
  std::string host_;
  std::string failure_;  // the first failed MPI call; see check()
  StallOptions stall_;
  int64_t sequence_ = 0;  // collectives issued (same numbering on every rank)
  std::unique_ptr<HeartbeatMonitor> monitor_;
  MpiComm node_comm_;   // the ranks of this node
  MpiComm cross_comm_;  // this node rank on every node (several nodes only)
  int node_rank_ = 0;
  int node_size_ = 1;
  int nodes_ = 1;
  std::shared_ptr<SharedSegment> staging_;               // null: node shared memory is off
  std::unique_ptr<NodeBarrier> node_barrier_;            // its segment also holds the sum descriptors
  struct WeakBuffer {
    std::weak_ptr<SharedSegment> segment;
    int64_t number = 0;  // the same on every rank (new_buffer is collective)
  };
  std::vector<WeakBuffer> buffers_;                      // from new_buffer(), comm thread only
  int64_t buffers_made_ = 0;
  std::unique_ptr<CommThread> thread_;
};

// Tests: after the next `after` MPI calls checked by any MpiCommunicator of this process, the
// `count` following ones are reported as failed (MPI_ERR_OTHER) after they return, as an MPI
// error would be.
void fail_mpi_calls_for_testing(int count, int after = 0);

}  // namespace cmaf::cluster
