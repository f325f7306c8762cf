#include "cluster/mpi_communicator.h"


#include <glog/logging.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "cluster/bf16_wire.h"
#include "cluster/cluster_error.h"
#include "cluster/mpi_thread.h"
#include "cluster/process_runtime.h"
#include "common/error.h"

namespace cmaf::cluster {
namespace {

MPI_Datatype mpi_type(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kLong: return MPI_INT64_T;
    case at::kBFloat16: return MPI_UINT16_T;  // the bit patterns, reduced by our own ops below
    default: return MPI_DATATYPE_NULL;  // excluded by check_collective_tensor
  }
}

// MPI has no bf16: these user-defined (commutative) ops reduce the 16-bit patterns, so a bf16
// tensor travels as 2 bytes an element, not as a widened fp32 copy.
void bf16_sum_op(void* in, void* inout, int* count, MPI_Datatype* /*type*/) {
  bf16_sum_into(static_cast<const uint16_t*>(in), static_cast<uint16_t*>(inout), *count);
}
void bf16_max_op(void* in, void* inout, int* count, MPI_Datatype* /*type*/) {
  bf16_max_into(static_cast<const uint16_t*>(in), static_cast<uint16_t*>(inout), *count);
}

// MPI_MAX on floats is `inout = inout > in ? inout : in` (OpenMPI), which keeps or drops a NaN
// depending on which rank holds it. This one gives NaN when any rank has one (at::maximum).
template <typename T>
void nan_max_into(const T* in, T* inout, int count) {
  for (int i = 0; i < count; ++i) {
    if (std::isnan(inout[i])) continue;
    if (std::isnan(in[i]) || in[i] > inout[i]) inout[i] = in[i];
  }
}
void float_max_op(void* in, void* inout, int* count, MPI_Datatype* /*type*/) {
  nan_max_into(static_cast<const float*>(in), static_cast<float*>(inout), *count);
}
void double_max_op(void* in, void* inout, int* count, MPI_Datatype* /*type*/) {
  nan_max_into(static_cast<const double*>(in), static_cast<double*>(inout), *count);
}

std::atomic<int> injected_mpi_failures{0};  // fail_mpi_calls_for_testing
std::atomic<int> injected_mpi_passes{0};    // calls that pass before those fail

// MPI counts are int: large tensors go in chunks of at most this many elements.
constexpr int64_t kMaxChunk = INT_MAX / 2;

// Each rank's staging block for sums of tensors that are not in node shared memory.
constexpr int64_t kStagingBytes = int64_t{4} << 20;

// Each rank's control block: its NodeBarrier counter at 0, its sum descriptor on the next line,
// and at its end a word that a rank sets (to its world rank + 1) when its MPI call between
// nodes failed, for the node's other ranks to see after the sum's last barrier.
constexpr int64_t kDescriptorOffset = 64;
constexpr int64_t kFailureOffset = 120;
constexpr int64_t kControlBytes = 128;

std::string describe_sum(int64_t bytes, int32_t type, int64_t buffer, int64_t offset) {
  return str(bytes, " bytes of ", at::toString(static_cast<at::ScalarType>(type)),
             buffer < 0 ? str(" through the staging block (chunk at byte ", offset, ")")
                        : str(" in node shared buffer #", buffer, " at byte ", offset));
}

// CMAF_NODE_SHARED_MEMORY: 1 (unset, empty or "1"), 0 ("0"), or -1: another value (reported
// once the ranks have compared settings, so that every rank fails, not only those that have it).
int shared_memory_setting() {
  const char* value = std::getenv("CMAF_NODE_SHARED_MEMORY");
  if (value == nullptr || *value == '\0' || std::strcmp(value, "1") == 0) return 1;
  return std::strcmp(value, "0") == 0 ? 0 : -1;
}

// CMAF_SIMULATED_RANKS_PER_NODE=k (tests and benchmarks of the several-node path on one
// machine): on each real node, node ranks 0..k-1 count as one node, k..2k-1 as the next, and
// so on. 0: unset; -1: not a positive integer (reported once the ranks have compared values).
int simulated_ranks_per_node() {
  const char* value = std::getenv("CMAF_SIMULATED_RANKS_PER_NODE");
  if (value == nullptr || *value == '\0') return 0;
  char* end = nullptr;
  const long k = std::strtol(value, &end, 10);
  if (end == value || *end != '\0' || k <= 0 || k > INT_MAX) return -1;
  return static_cast<int>(k);
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm parent, StallOptions stall, bool node_shared_memory)
    : host_(host_name()), stall_(stall) {
  check(mpi_call([&] { return MPI_Comm_rank(parent, &rank_); }), "MPI_Comm_rank");
  // Every call below waits for all ranks, and no heartbeat watches them yet. Where MPI calls are
  // funnelled (mpi_thread.h) the waiting happens off the MPI thread (mpi_comm_dup and the other
  // helpers), which stays free for other communicators and for the watchdog's MPI_Abort.
  PhaseWatchdog watchdog("the communicator's set-up", stall_.limit, str("rank ", rank_, " on ", host_),
                         WatchdogEnd::kAbortJob);
  watchdog.at("MPI_Comm_dup");
  check(mpi_comm_dup(parent, comm_.receive()), "MPI_Comm_dup");
  mpi_run([&] {
    check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    check(MPI_Op_create(&bf16_sum_op, /*commute=*/1, bf16_sum_.receive()), "MPI_Op_create");
    check(MPI_Op_create(&bf16_max_op, /*commute=*/1, bf16_max_.receive()), "MPI_Op_create");
    check(MPI_Op_create(&float_max_op, /*commute=*/1, float_max_.receive()), "MPI_Op_create");
    check(MPI_Op_create(&double_max_op, /*commute=*/1, double_max_.receive()), "MPI_Op_create");
  });
  if (size_ > 1) {
    watchdog.at("choosing the sum path (MPI_Allreduce, MPI_Comm_split_type, node shared memory)");
    // One answer for all ranks, whatever each one's environment says (mpirun passes it to other
    // hosts only with -x): the smallest setting, and whether any rank has an invalid one.
    const int wanted = node_shared_memory ? shared_memory_setting() : 0;
    const int settings[2] = {-wanted, wanted};
    int range[2] = {0, 0};  // -(smallest setting), largest
    check(mpi_allreduce(settings, range, 2, MPI_INT, MPI_MAX, comm_), "MPI_Allreduce");
    if (wanted < 0) {
      throw ClusterError(str("[rank ", rank_, " on ", host_, "] CMAF_NODE_SHARED_MEMORY=",
                             std::getenv("CMAF_NODE_SHARED_MEMORY"), ": expected 0 (float sums through MPI_Allreduce) "
                             "or 1 (the default: through node shared memory)"));
    }
    if (-range[0] < 0) {
      throw ClusterError(str("[rank ", rank_, " on ", host_, "] CMAF_NODE_SHARED_MEMORY is neither 0 nor 1 on another "
                             "rank (its error names the value); every rank must have 0, 1 or none"));
    }
    const auto [smallest_node, largest_node] = find_nodes();
    if (-range[0] == 1) setup_node_shared_memory(smallest_node, largest_node);
  }
  if (size_ > 1) {
    // Its thread calls MPI beside the communication thread, or through the MPI thread's funnel.
    watchdog.at("the heartbeat channel (MPI_Comm_dup)");
    const auto busy_limit = stall_.busy_limit.count() > 0 ? stall_.busy_limit : kBusyLimitFactor * stall_.limit;
    monitor_ = std::make_unique<HeartbeatMonitor>(comm_, stall_.heartbeat_period, stall_.limit, busy_limit, host_);
  }
  thread_ = std::make_unique<CommThread>();
}

std::pair<int, int> MpiCommunicator::find_nodes() {
  check(mpi_comm_split_type(comm_, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, node_comm_.receive()),
        "MPI_Comm_split_type");
  // The ranks compare their CMAF_SIMULATED_RANKS_PER_NODE before any of them acts on it (mpirun
  // does not pass the environment to other hosts unless told: -x).
  const int simulated = simulated_ranks_per_node();
  const int settings[2] = {-simulated, simulated};
  int range[2] = {0, 0};  // -(smallest setting), largest
  check(mpi_allreduce(settings, range, 2, MPI_INT, MPI_MAX, comm_), "MPI_Allreduce");
  CMAF_CHECK(-range[0] == range[1], "CMAF_SIMULATED_RANKS_PER_NODE must be the same on every rank: found ",
             -range[0], " to ", range[1], " (0: unset, -1: not a positive integer)");
  CMAF_CHECK(simulated >= 0, "CMAF_SIMULATED_RANKS_PER_NODE=", std::getenv("CMAF_SIMULATED_RANKS_PER_NODE"),
             ": expected a positive number of ranks per node");
  if (simulated > 0) {
    int shared_rank = 0;
    check(mpi_call([&] { return MPI_Comm_rank(node_comm_, &shared_rank); }), "MPI_Comm_rank");
    MpiComm simulated_node;
    check(mpi_comm_split(node_comm_, shared_rank / simulated, shared_rank, simulated_node.receive()),
          "MPI_Comm_split");
    check(node_comm_.reset(), "MPI_Comm_free");
    node_comm_ = std::move(simulated_node);
  }
  check(mpi_call([&] { return MPI_Comm_rank(node_comm_, &node_rank_); }), "MPI_Comm_rank");
  check(mpi_call([&] { return MPI_Comm_size(node_comm_, &node_size_); }), "MPI_Comm_size");
  const int leader = node_rank_ == 0 ? 1 : 0;
  check(mpi_allreduce(&leader, &nodes_, 1, MPI_INT, MPI_SUM, comm_), "MPI_Allreduce");
  const int sizes[2] = {-node_size_, node_size_};
  int extremes[2] = {0, 0};  // -(smallest node), largest node
  check(mpi_allreduce(sizes, extremes, 2, MPI_INT, MPI_MAX, comm_), "MPI_Allreduce");
  return {-extremes[0], extremes[1]};
}

void MpiCommunicator::setup_node_shared_memory(int smallest_node, int largest_node) {
  if (smallest_node != largest_node || largest_node == 1) {
    // A node's slice of the sum is split among its ranks, and the same slices cross between
    // nodes: that needs the same number of ranks on every node (and more than one).
    if (rank_ == 0) {
      LOG(INFO) << "float sums through MPI_Allreduce: " << nodes_ << " nodes with " << smallest_node << " to "
                << largest_node << " ranks each (node shared memory needs the same count, above 1, on every node)";
    }
    return;
  }
  if (nodes_ > 1) {
    // Rank i of every node sums slice i of the node sums with its counterparts on the other nodes.
    check(mpi_comm_split(comm_, node_rank_, rank_, cross_comm_.receive()), "MPI_Comm_split");
  }
  std::string why;
  std::shared_ptr<SharedSegment> control = SharedSegment::map(node_comm_, kControlBytes, &why, rank_);
  std::shared_ptr<SharedSegment> staging;
  if (control) staging = SharedSegment::map(node_comm_, kStagingBytes, &why, rank_);
  // Every node takes the same path: a node that cannot map sends all sums through MPI.
  if (!agreed_by_all_nodes(staging != nullptr, &why)) {
    LOG(WARNING) << "node shared memory unavailable, float sums go through MPI_Allreduce: " << why;
    check(cross_comm_.reset(), "MPI_Comm_free");
    return;
  }
  staging_ = std::move(staging);
  node_barrier_ = std::make_unique<NodeBarrier>(std::move(control), node_rank_, node_size_);
  if (rank_ == 0) {
    LOG(INFO) << "float sums through node shared memory (" << node_size_ << " ranks a node"
              << (nodes_ > 1 ? str(", then MPI_Allreduce between ", nodes_, " nodes") : std::string()) << ")";
  }
}

bool MpiCommunicator::agreed_by_all_nodes(bool ok, std::string* why) {
  if (nodes_ == 1) return ok;  // SharedSegment::map has agreed over the node already
  int everyone = 0;
  const int mine = ok ? 1 : 0;
  check(mpi_allreduce(&mine, &everyone, 1, MPI_INT, MPI_MIN, comm_), "MPI_Allreduce");
  if (ok && !everyone && why) *why = "a rank on another node could not map node shared memory (its log says why)";
  return everyone != 0;
}

MpiCommunicator::~MpiCommunicator() {
  // The monitor's last barrier waits for every rank, and nothing watches it any more.
  PhaseWatchdog watchdog("the communicator's shut-down", stall_.limit, str("rank ", rank_, " on ", host_),
                         WatchdogEnd::kAbortJob);
  watchdog.at("the collectives still queued");
  thread_.reset();  // finishes the queued collectives first
  node_barrier_.reset();
  staging_.reset();
  watchdog.at("the heartbeat channel's last MPI_Barrier");
  monitor_.reset();
  // The communicators and ops free themselves (members), comm_ last.
}

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int length = 0;
  mpi_call([&] { return MPI_Error_string(code, text, &length); });
  return std::string(text, static_cast<size_t>(length));
}

void fail_mpi_calls_for_testing(int count, int after) {
  injected_mpi_passes.store(after);
  injected_mpi_failures.store(count);
}

void MpiCommunicator::check(int code, const char* call) {
  if (code == MPI_SUCCESS && injected_mpi_failures.load() > 0) {
    const bool passes = injected_mpi_passes.load() > 0 && injected_mpi_passes.fetch_sub(1) > 0;
    if (!passes && injected_mpi_failures.fetch_sub(1) > 0) code = MPI_ERR_OTHER;
  }
  if (code == MPI_SUCCESS) return;
  const std::string what = str("[rank ", rank_, " on ", host_, "] ", call, " failed: ", mpi_error_text(code));
  if (failure_.empty()) failure_ = what;  // the constructor's calls, or a collective's on the communication thread
  throw ClusterError(what);
}

MpiCommunicator::CollectiveScope MpiCommunicator::begin_collective(const char* call, int64_t bytes) {
  if (!failure_.empty()) {
    throw ClusterError(str("[rank ", rank_, " on ", host_, "] ", call, " not started: an earlier collective on this ",
                           "communicator failed (", failure_, "), after which MPI's state is undefined"));
  }
  ++sequence_;
  if (monitor_) monitor_->entered(sequence_, call, bytes);
  return CollectiveScope{monitor_.get()};
}

MPI_Op MpiCommunicator::mpi_op(at::ScalarType type, ReduceOp op) const {
  if (type == at::kBFloat16) return op == ReduceOp::kMax ? bf16_max_ : bf16_sum_;
  if (op != ReduceOp::kMax) return MPI_SUM;
  if (type == at::kFloat) return float_max_;
  if (type == at::kDouble) return double_max_;
  return MPI_MAX;  // int64
}

void MpiCommunicator::run_all_reduce(at::Tensor& tensor, ReduceOp op) {
  const at::ScalarType type = tensor.scalar_type();
  if (staging_ && op != ReduceOp::kMax && (type == at::kFloat || type == at::kDouble)) {
    shared_memory_sum(tensor);
    if (op == ReduceOp::kAvg) tensor.div_(size_);
    return;
  }
  auto* base = static_cast<char*>(tensor.data_ptr());
  const int64_t element = static_cast<int64_t>(tensor.element_size());
  for (int64_t offset = 0; offset < tensor.numel(); offset += kMaxChunk) {
    const int count = static_cast<int>(std::min(kMaxChunk, tensor.numel() - offset));
    const CollectiveScope scope = begin_collective("MPI_Allreduce", count * element);
    check(mpi_allreduce(MPI_IN_PLACE, base + offset * element, count, mpi_type(tensor.scalar_type()),
                        mpi_op(tensor.scalar_type(), op), comm_),
          "MPI_Allreduce");
  }
  if (op == ReduceOp::kAvg) tensor.div_(size_);
}

void MpiCommunicator::sum_slots(const std::vector<char*>& slots, at::ScalarType type, int64_t elements,
                                const SumDescriptor& mine) {
  // The barriers order the memory: every rank's copy (and descriptor) is written before anyone
  // reads it, and every slice is summed before anyone uses (or overwrites) its copy again.
  const auto descriptor_of = [&](int node_rank) {
    return reinterpret_cast<SumDescriptor*>(node_barrier_->segment().block(node_rank) + kDescriptorOffset);
  };
  std::memcpy(descriptor_of(node_rank_), &mine, sizeof(mine));
  node_barrier_->arrive_and_wait();
  // Every rank compares every peer with itself, so a difference is found on all of them; all
  // still pass the second barrier (no one overwrites its descriptor before everyone has read).
  static_assert(kDescriptorOffset + sizeof(SumDescriptor) <= kFailureOffset, "the control block holds a descriptor");
  bool differ = false;
  for (int r = 0; r < node_size_ && !differ; ++r) {
    SumDescriptor peer;
    std::memcpy(&peer, descriptor_of(r), sizeof(peer));
    differ = peer.sequence != mine.sequence || peer.bytes != mine.bytes || peer.offset != mine.offset ||
             peer.buffer != mine.buffer || peer.type != mine.type;
  }
  std::string sides;
  if (differ) {
    for (int r = 0; r < node_size_; ++r) {
      SumDescriptor peer;
      std::memcpy(&peer, descriptor_of(r), sizeof(peer));
      sides += str(r == 0 ? "" : "; ", "rank ", peer.rank, ": collective #", peer.sequence, ", ",
                   describe_sum(peer.bytes, peer.type, peer.buffer, peer.offset));
    }
  }
  const bool several_nodes = cross_comm_ != MPI_COMM_NULL;
  // Several nodes: an MPI call between nodes that fails on this rank is kept here, flagged in the
  // control block and thrown after the last barrier, so that the node's other ranks (which have
  // summed their slices and wait there) learn it and fail too, instead of waiting for the stall
  // limit or returning a slice that was never summed between nodes.
  std::string failed;
  const auto between_nodes = [&](const auto& call) {
    if (!failed.empty()) return;
    try {
      call();
    } catch (const ClusterError& error) {
      failed = error.what();
    }
  };
  // Several nodes: whether the ranks of every node agree, and the nodes with each other (node
  // rank i with its counterparts; a node's ranks all agree or all refuse), so that every rank of
  // every node refuses together. A node that refused alone would leave the others waiting in the
  // sum between nodes, or paired with its next sum; nodes that each agree but sum different
  // tensors would cut them into different slices.
  bool refused_elsewhere = false;
  std::string elsewhere;
  if (several_nodes) {
    between_nodes([&] {
      const int64_t fields[] = {differ ? 1 : 0, mine.sequence, mine.bytes, mine.offset, mine.buffer, mine.type};
      constexpr int kFields = static_cast<int>(sizeof(fields) / sizeof(fields[0]));
      int64_t pairs[2 * kFields];  // (v, -v): MPI_MAX gives each field's largest and smallest value
      for (int f = 0; f < kFields; ++f) {
        pairs[2 * f] = fields[f];
        pairs[2 * f + 1] = -fields[f];
      }
      int64_t range[2 * kFields];
      check(mpi_allreduce(pairs, range, 2 * kFields, MPI_INT64_T, MPI_MAX, cross_comm_),
            "MPI_Allreduce (between nodes)");
      bool nodes_differ = false;
      for (int f = 1; f < kFields; ++f) nodes_differ = nodes_differ || range[2 * f] != -range[2 * f + 1];
      refused_elsewhere = !differ && (range[0] == 1 || nodes_differ);
      if (range[0] == 1) {
        elsewhere = "the ranks of another node passed different tensors (their errors name them)";
      } else if (nodes_differ) {
        elsewhere = str("the nodes passed different tensors (collectives #", -range[3], " to #", range[2], ", ",
                        -range[5], " to ", range[4], " bytes, dtypes ",
                        at::toString(static_cast<at::ScalarType>(-range[11])), " to ",
                        at::toString(static_cast<at::ScalarType>(range[10])), ")");
      }
    });
  }
  const int64_t element = static_cast<int64_t>(at::elementSize(type));
  const auto [begin, end] = owned_range(elements, element, node_rank_, node_size_);
  if (differ || refused_elsewhere || !failed.empty()) {
    // Nothing summed: every tensor stays as it was.
  } else if (!several_nodes) {
    sum_into_all(slots, type, begin, end);
  } else if (begin < end) {  // the same slice is empty on every node (owned_range of the same sizes)
    // This node's sum of the slice, then the sum over nodes of the node sums (every node's rank
    // of this node rank gets the same result), then to the node's other ranks.
    sum_into(slots, type, begin, end, node_rank_);
    char* own = slots[static_cast<size_t>(node_rank_)];
    for (int64_t offset = begin; offset < end; offset += kMaxChunk) {
      const int count = static_cast<int>(std::min(kMaxChunk, end - offset));
      between_nodes([&] {
        check(mpi_allreduce(MPI_IN_PLACE, own + offset * element, count, mpi_type(type), MPI_SUM, cross_comm_),
              "MPI_Allreduce (between nodes)");
      });
    }
    if (failed.empty()) copy_to_all(slots, element, begin, end, node_rank_);
  }
  if (!failed.empty()) failure_word(node_rank_)->store(rank_ + 1, std::memory_order_relaxed);  // the barrier orders it
  node_barrier_->arrive_and_wait();
  if (differ) {
    throw ClusterError(str("[rank ", rank_, " on ", host_, "] all_reduce through node shared memory: the ranks of ",
                           "this node passed different tensors (", sides, "). Every rank must all-reduce tensors ",
                           "of the same dtype and size, in the same order"));
  }
  if (!failed.empty()) throw ClusterError(failed);  // check() has marked the communicator failed
  if (several_nodes) {
    for (int r = 0; r < node_size_; ++r) {
      const int32_t failed_rank = failure_word(r)->load(std::memory_order_relaxed) - 1;
      if (failed_rank < 0) continue;
      const std::string what = str("[rank ", rank_, " on ", host_, "] all_reduce through node shared memory: rank ",
                                   failed_rank, " on this node failed in its MPI call between nodes (its error says ",
                                   "which and why); this node's sum is incomplete");
      if (failure_.empty()) failure_ = what;  // MPI's state between the nodes is undefined now
      throw ClusterError(what);
    }
  }
  if (refused_elsewhere) {
    throw ClusterError(str("[rank ", rank_, " on ", host_, "] all_reduce through node shared memory: ", elsewhere,
                           "; here every rank passed ",
                           describe_sum(mine.bytes, mine.type, mine.buffer, mine.offset), " (collective #",
                           mine.sequence, "). Every rank must all-reduce tensors of the same dtype and size, in the ",
                           "same order"));
  }
}

std::atomic<int32_t>* MpiCommunicator::failure_word(int node_rank) const {
  static_assert(std::atomic<int32_t>::is_always_lock_free && kFailureOffset + 4 <= kControlBytes);
  return reinterpret_cast<std::atomic<int32_t>*>(node_barrier_->segment().block(node_rank) + kFailureOffset);
}

void MpiCommunicator::shared_memory_sum(at::Tensor& tensor) {
  auto* data = static_cast<char*>(tensor.data_ptr());
  const int64_t element = static_cast<int64_t>(tensor.element_size());
  const int64_t bytes = tensor.numel() * element;
  if (bytes == 0) return;
  std::vector<char*> slots(static_cast<size_t>(node_size_));
  SumDescriptor descriptor;
  descriptor.bytes = bytes;
  descriptor.type = static_cast<int32_t>(tensor.scalar_type());
  descriptor.rank = rank_;
  if (const HeldBuffer held = segment_holding(data, bytes); held.segment) {
    // In node shared memory already (a bucket): summed where it lies, at the same offset in
    // every rank's block (the contract: the same collectives on the same buffers everywhere).
    const CollectiveScope scope = begin_collective("shared-memory sum", bytes);
    const int64_t offset = data - held.segment->mine();
    for (int r = 0; r < node_size_; ++r) slots[static_cast<size_t>(r)] = held.segment->block(r) + offset;
    descriptor.sequence = sequence_;
    descriptor.buffer = held.number;
    descriptor.offset = offset;
    sum_slots(slots, tensor.scalar_type(), tensor.numel(), descriptor);
    return;
  }
  for (int r = 0; r < node_size_; ++r) slots[static_cast<size_t>(r)] = staging_->block(r);
  const int64_t chunk = staging_->bytes() / element * element;
  for (int64_t offset = 0; offset < bytes; offset += chunk) {
    const int64_t count = std::min(chunk, bytes - offset);
    const CollectiveScope scope = begin_collective("shared-memory sum (staged)", count);
    std::memcpy(staging_->mine(), data + offset, static_cast<size_t>(count));
    descriptor.sequence = sequence_;
    descriptor.offset = offset;
    sum_slots(slots, tensor.scalar_type(), count / element, descriptor);
    std::memcpy(data + offset, staging_->mine(), static_cast<size_t>(count));
  }
}

at::Tensor MpiCommunicator::new_buffer(int64_t elements, const at::TensorOptions& options) {
  const at::ScalarType type = at::typeMetaToScalarType(options.dtype());
  if (!staging_ || elements == 0 || options.device().type() != at::kCPU || (type != at::kFloat && type != at::kDouble)) {
    return at::zeros({elements}, options);
  }
  const int64_t bytes = elements * static_cast<int64_t>(at::elementSize(type));
  std::shared_ptr<SharedSegment> segment;
  std::string why;
  thread_->submit([&] {
    const CollectiveScope scope = begin_collective("shared-memory buffer", bytes);
    try {
      segment = SharedSegment::map(node_comm_, bytes, &why, rank_);
    } catch (const ClusterError& error) {
      // A failed MPI call: as check() does, later collectives fail at once naming it.
      if (failure_.empty()) failure_ = error.what();
      throw;
    }
    if (!agreed_by_all_nodes(segment != nullptr, &why)) segment.reset();
    const int64_t number = buffers_made_++;  // counted whether or not it maps: the same everywhere
    if (segment) {
      buffers_.erase(std::remove_if(buffers_.begin(), buffers_.end(),
                                    [](const WeakBuffer& b) { return b.segment.expired(); }),
                     buffers_.end());
      buffers_.push_back(WeakBuffer{segment, number});
    }
  }).get();
  if (!segment) {
    LOG(WARNING) << "a " << bytes << "-byte buffer could not go to node shared memory (summed through the "
                 << "staging block instead): " << why;
    return at::zeros({elements}, options);
  }
  // The tensor owns the mapping: it unmaps when the last view of it goes (fresh pages are zero).
  char* block = segment->mine();
  return at::from_blob(block, {elements}, [segment](void*) {}, options);
}

void MpiCommunicator::begin_local_work(const std::string& what) {
  if (monitor_) monitor_->begin_local_work(what);
}

void MpiCommunicator::end_local_work() {
  if (monitor_) monitor_->end_local_work();
}

bool MpiCommunicator::in_node_shared_memory(const at::Tensor& tensor) {
  const auto* data = static_cast<const char*>(tensor.data_ptr());
  const int64_t bytes = tensor.numel() * static_cast<int64_t>(tensor.element_size());
  bool found = false;
  thread_->submit([&] { found = segment_holding(data, bytes).segment != nullptr; }).get();
  return found;
}

MpiCommunicator::HeldBuffer MpiCommunicator::segment_holding(const char* data, int64_t bytes) const {
  for (const WeakBuffer& buffer : buffers_) {
    std::shared_ptr<SharedSegment> segment = buffer.segment.lock();
    if (segment && segment->holds(data, bytes)) return HeldBuffer{std::move(segment), buffer.number};
  }
  return HeldBuffer{};
}

WorkHandle MpiCommunicator::all_reduce_async(at::Tensor tensor, ReduceOp op) {
  check_collective_tensor(*this, tensor, "all_reduce", op);
  return std::make_shared<Work>(thread_->submit([this, tensor, op]() mutable { run_all_reduce(tensor, op); }));
}

WorkHandle MpiCommunicator::broadcast_async(at::Tensor tensor, int root) {
  check_collective_tensor(*this, tensor, "broadcast");
  CMAF_CHECK(root >= 0 && root < size_, "broadcast root ", root, " of ", size_, " ranks");
  return std::make_shared<Work>(thread_->submit([this, tensor, root]() mutable {
    // Bytes: every dtype (bf16 included) broadcasts exactly.
    auto* base = static_cast<char*>(tensor.data_ptr());
    const int64_t bytes = tensor.numel() * static_cast<int64_t>(tensor.element_size());
    for (int64_t offset = 0; offset < bytes; offset += kMaxChunk) {
      const int count = static_cast<int>(std::min(kMaxChunk, bytes - offset));
      const CollectiveScope scope = begin_collective("MPI_Bcast", count);
      check(mpi_bcast(base + offset, count, MPI_BYTE, root, comm_), "MPI_Bcast");
    }
  }));
}

WorkHandle MpiCommunicator::all_gather_async(at::Tensor dense, at::Tensor output) {
  check_collective_tensor(*this, dense, "all_gather");
  check_gather_output(*this, dense, output);
  const int64_t bytes = dense.numel() * static_cast<int64_t>(dense.element_size());
  CMAF_CHECK_LE(bytes, static_cast<int64_t>(INT_MAX), "all_gather of more than 2 GiB per rank");
  // The output is contiguous: gather in that order (a copy for a channels-last tensor).
  return std::make_shared<Work>(thread_->submit([this, tensor = dense.contiguous(), output, bytes] {
    const CollectiveScope scope = begin_collective("MPI_Allgather", bytes);
    check(mpi_allgather(tensor.data_ptr(), static_cast<int>(bytes), MPI_BYTE, output.data_ptr(),
                        static_cast<int>(bytes), MPI_BYTE, comm_),
          "MPI_Allgather");
  }));
}

WorkHandle MpiCommunicator::barrier_async() {
  return std::make_shared<Work>(thread_->submit([this] {
    const CollectiveScope scope = begin_collective("MPI_Barrier", 0);
    check(mpi_barrier(comm_), "MPI_Barrier");
  }));
}

}  // namespace cmaf::cluster
