#include "cluster/mpi_communicator.h"


#include <glog/logging.h>

#include <climits>

#include "cluster/bf16_wire.h"
#include "cluster/cluster_error.h"
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

// MPI counts are int: large tensors go in chunks of at most this many elements.
constexpr int64_t kMaxChunk = INT_MAX / 2;

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm parent, StallOptions stall) : host_(host_name()), stall_(stall) {
  check(MPI_Comm_dup(parent, &comm_), "MPI_Comm_dup");
  check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  if (provided == MPI_THREAD_MULTIPLE && size_ > 1) {
    monitor_ = std::make_unique<HeartbeatMonitor>(comm_, stall_.heartbeat_period, stall_.limit, host_);
  } else if (size_ > 1) {
    LOG(WARNING) << "MPI provides no MPI_THREAD_MULTIPLE: stall detection is off (a hung rank hangs the job)";
  }
  check(MPI_Op_create(&bf16_sum_op, /*commute=*/1, &bf16_sum_), "MPI_Op_create");
  check(MPI_Op_create(&bf16_max_op, /*commute=*/1, &bf16_max_), "MPI_Op_create");
  thread_ = std::make_unique<CommThread>();
}

MpiCommunicator::~MpiCommunicator() {
  thread_.reset();  // finishes the queued collectives first
  monitor_.reset();
  if (bf16_sum_ != MPI_OP_NULL) MPI_Op_free(&bf16_sum_);
  if (bf16_max_ != MPI_OP_NULL) MPI_Op_free(&bf16_max_);
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, static_cast<size_t>(length));
}

void MpiCommunicator::check(int code, const char* call) const {
  if (code == MPI_SUCCESS) return;
  throw ClusterError(str("[rank ", rank_, " on ", host_, "] ", call, " failed: ", mpi_error_text(code)));
}

MpiCommunicator::CollectiveScope MpiCommunicator::begin_collective(const char* call, int64_t bytes) {
  ++sequence_;
  if (monitor_) monitor_->entered(sequence_, call, bytes);
  return CollectiveScope{monitor_.get()};
}

MPI_Op MpiCommunicator::mpi_op(at::ScalarType type, ReduceOp op) const {
  if (type == at::kBFloat16) return op == ReduceOp::kMax ? bf16_max_ : bf16_sum_;
  return op == ReduceOp::kMax ? MPI_MAX : MPI_SUM;
}

void MpiCommunicator::run_all_reduce(at::Tensor& tensor, ReduceOp op) {
  auto* base = static_cast<char*>(tensor.data_ptr());
  const int64_t element = static_cast<int64_t>(tensor.element_size());
  for (int64_t offset = 0; offset < tensor.numel(); offset += kMaxChunk) {
    const int count = static_cast<int>(std::min(kMaxChunk, tensor.numel() - offset));
    const CollectiveScope scope = begin_collective("MPI_Allreduce", count * element);
    check(MPI_Allreduce(MPI_IN_PLACE, base + offset * element, count, mpi_type(tensor.scalar_type()),
                        mpi_op(tensor.scalar_type(), op), comm_),
          "MPI_Allreduce");
  }
  if (op == ReduceOp::kAvg) tensor.div_(size_);
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
      check(MPI_Bcast(base + offset, count, MPI_BYTE, root, comm_), "MPI_Bcast");
    }
  }));
}

at::Tensor MpiCommunicator::all_gather(const at::Tensor& dense) {
  check_collective_tensor(*this, dense, "all_gather");
  const at::Tensor tensor = dense.contiguous();  // the output is contiguous: gather in that order
  std::vector<int64_t> shape{size_};
  shape.insert(shape.end(), tensor.sizes().begin(), tensor.sizes().end());
  at::Tensor out = at::empty(shape, tensor.options());
  thread_->submit([&] {
    const int64_t bytes = tensor.numel() * static_cast<int64_t>(tensor.element_size());
    CMAF_CHECK_LE(bytes, static_cast<int64_t>(INT_MAX), "all_gather of more than 2 GiB per rank");
    const CollectiveScope scope = begin_collective("MPI_Allgather", bytes);
    check(MPI_Allgather(tensor.data_ptr(), static_cast<int>(bytes), MPI_BYTE, out.data_ptr(),
                        static_cast<int>(bytes), MPI_BYTE, comm_),
          "MPI_Allgather");
  }).get();
  return out;
}

void MpiCommunicator::barrier() {
  thread_->submit([&] {
    const CollectiveScope scope = begin_collective("MPI_Barrier", 0);
    check(MPI_Barrier(comm_), "MPI_Barrier");
  }).get();
}

}  // namespace cmaf::cluster
