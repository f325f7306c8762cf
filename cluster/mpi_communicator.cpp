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

void check_simulated_setting(int simulated) {
  CMAF_CHECK(simulated >= 0, "CMAF_SIMULATED_RANKS_PER_NODE=", std::getenv("CMAF_SIMULATED_RANKS_PER_NODE"),
             ": expected a positive number of ranks per node");
}

}  // namespace

[[noreturn]] void MpiCommunicator::refuse_shared_memory_setting() const {
  throw ClusterError(str("[rank ", rank_, " on ", host_, "] CMAF_NODE_SHARED_MEMORY=",
                         std::getenv("CMAF_NODE_SHARED_MEMORY"), ": expected 0 (float sums through MPI_Allreduce) "
                         "or 1 (the default: through node shared memory)"));
}

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
    if (wanted < 0) refuse_shared_memory_setting();
    if (-range[0] < 0) {
      throw ClusterError(str("[rank ", rank_, " on ", host_, "] CMAF_NODE_SHARED_MEMORY is neither 0 nor 1 on another "
                             "rank (its error names the value); every rank must have 0, 1 or none"));
    }
    const auto [smallest_node, largest_node] = find_nodes();
    if (-range[0] == 1) setup_node_shared_memory(smallest_node, largest_node);
  } else {
    // One rank: nothing to choose, but a setting that would be refused with more ranks still is.
    if (node_shared_memory && shared_memory_setting() < 0) refuse_shared_memory_setting();
    check_simulated_setting(simulated_ranks_per_node());
  }
  if (size_ > 1) {
    // Its thread calls MPI beside the communication thread, or through the MPI thread's funnel.
    watchdog.at("the heartbeat channel (MPI_Comm_dup, then a host-name MPI_Allgather)");
    monitor_ = std::make_unique<HeartbeatMonitor>(comm_, stall_.heartbeat_period, stall_.limit,
                                                  busy_limit(stall_.limit), host_, stall_.all_to_all_ranks);
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
  check_simulated_setting(simulated);
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

MPI_Datatype MpiCommunicator::mpi_type(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kLong: return MPI_INT64_T;
    case at::kBFloat16: return MPI_UINT16_T;  // the bit patterns, reduced by the bf16 ops above
    default: return MPI_DATATYPE_NULL;  // excluded by check_collective_tensor
  }
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

void MpiCommunicator::begin_local_work(const std::string& what) {
  if (monitor_) monitor_->begin_local_work(what);
}

std::chrono::milliseconds MpiCommunicator::busy_limit(std::chrono::milliseconds limit) const {
  return stall_.busy_limit.count() > 0 ? stall_.busy_limit : kBusyLimitFactor * limit;
}

std::unique_ptr<HeartbeatMonitor> MpiCommunicator::new_heartbeat_monitor(std::chrono::milliseconds limit) {
  if (size_ == 1) return nullptr;
  std::unique_ptr<HeartbeatMonitor> monitor;
  // Its MPI_Comm_dup is a collective on comm_: in order with the ones queued before, and watched
  // by this communicator's own heartbeat like them.
  Work(thread_->submit([&] {
    const CollectiveScope scope = begin_collective("MPI_Comm_dup and host-name MPI_Allgather (a heartbeat channel)", 0);
    monitor = std::make_unique<HeartbeatMonitor>(comm_, stall_.heartbeat_period, limit, busy_limit(limit), host_,
                                                 stall_.all_to_all_ranks);
  })).wait();
  return monitor;
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
