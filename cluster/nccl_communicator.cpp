#include "cluster/nccl_communicator.h"

#include <cuda_runtime.h>
#include <glog/logging.h>
#include <nccl.h>

#include <cstring>
#include <memory>
#include <type_traits>

#include "cluster/cluster_error.h"
#include "cluster/process_runtime.h"

namespace cmaf::cluster {

struct NcclCommunicator::State {
  int device = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
};

namespace {

ncclDataType_t nccl_type(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kBFloat16: return ncclBfloat16;
    default: return ncclInt64;  // check_collective_tensor admits only these four
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kAvg: return ncclAvg;
    case ReduceOp::kMax: return ncclMax;
  }
  return ncclSum;
}

}  // namespace

#define CMAF_CUDA_CHECK(call)                                                                 \
  do {                                                                                        \
    const cudaError_t cmaf_status_ = (call);                                                  \
    if (cmaf_status_ != cudaSuccess) {                                                        \
      throw ClusterError(str("[rank ", rank_, " on ", host_, "] ", #call, " failed: ",        \
                             cudaGetErrorString(cmaf_status_)));                              \
    }                                                                                         \
  } while (false)

#define CMAF_NCCL_CHECK(call)                                                                 \
  do {                                                                                        \
    const ncclResult_t cmaf_status_ = (call);                                                 \
    if (cmaf_status_ != ncclSuccess) {                                                        \
      throw ClusterError(str("[rank ", rank_, " on ", host_, "] ", #call, " failed: ",        \
                             ncclGetErrorString(cmaf_status_)));                              \
    }                                                                                         \
  } while (false)

NcclCommunicator::NcclCommunicator(Communicator& bootstrap, int device, std::chrono::milliseconds stall_limit)
    : bootstrap_(bootstrap),
      rank_(bootstrap.rank()),
      size_(bootstrap.size()),
      host_(host_name()),
      stall_limit_(stall_limit),
      state_(std::make_unique<State>()) {
  state_->device = device;
  CMAF_CUDA_CHECK(cudaSetDevice(device));
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (rank_ == 0) CMAF_NCCL_CHECK(ncclGetUniqueId(&id));
  at::Tensor id_bytes = at::empty({static_cast<int64_t>(sizeof(id))}, at::kByte);
  std::memcpy(id_bytes.data_ptr(), &id, sizeof(id));
  // The 128-byte id travels as 16 int64 words (a dtype every backend broadcasts exactly).
  at::Tensor words = id_bytes.view(at::kLong);
  bootstrap_.broadcast(words, 0);
  std::memcpy(&id, words.data_ptr(), sizeof(id));
  {
    PhaseWatchdog watchdog("NCCL set-up", stall_limit_, str("rank ", rank_, " on ", host_), WatchdogEnd::kAbortJob);
    watchdog.at("ncclCommInitRank");
    CMAF_NCCL_CHECK(ncclCommInitRank(&state_->comm, size_, id, rank_));
  }
  CMAF_CUDA_CHECK(cudaStreamCreateWithFlags(&state_->stream, cudaStreamNonBlocking));
  watchdog_ = std::make_unique<CallWatchdog>(stall_limit_, str("rank ", rank_, " on ", host_), WatchdogEnd::kAbortJob);
  thread_ = std::make_unique<CommThread>();
}

NcclCommunicator::~NcclCommunicator() {
  PhaseWatchdog watchdog("the NCCL communicator's shut-down", stall_limit_, str("rank ", rank_, " on ", host_),
                         WatchdogEnd::kAbortJob);
  watchdog.at("the collectives still queued");
  thread_.reset();
  watchdog_.reset();
  watchdog.at("ncclCommDestroy");
  // A destructor cannot throw: failures are logged with the rank and host.
  if (state_->stream != nullptr) {
    const cudaError_t status = cudaStreamDestroy(state_->stream);
    if (status != cudaSuccess) {
      LOG(WARNING) << "[rank " << rank_ << " on " << host_ << "] cudaStreamDestroy failed: " << cudaGetErrorString(status);
    }
  }
  if (state_->comm != nullptr) {
    const ncclResult_t status = ncclCommDestroy(state_->comm);
    if (status != ncclSuccess) {
      LOG(WARNING) << "[rank " << rank_ << " on " << host_ << "] ncclCommDestroy failed: " << ncclGetErrorString(status);
    }
  }
}

namespace {
// Arms the watchdog for one collective, from its enqueueing (which may itself wait for peers:
// NCCL connects lazily, at a communicator's first collective) to the end of its stream.
class Armed {
 public:
  Armed(CallWatchdog& watchdog, const char* collective) : watchdog_(watchdog) { watchdog_.arm(collective); }
  ~Armed() { watchdog_.disarm(); }
  Armed(const Armed&) = delete;
  Armed& operator=(const Armed&) = delete;

 private:
  CallWatchdog& watchdog_;
};
}  // namespace

void NcclCommunicator::check_device_tensor(const at::Tensor& tensor, const std::string& operation) const {
  check_collective_tensor(*this, tensor, operation);
  if (!tensor.is_cuda()) {
    throw InternalError(str("communicator nccl does not support ", operation, " of CPU tensors (",
                            at::toString(tensor.scalar_type()), "): use the mpi communicator"));
  }
}

WorkHandle NcclCommunicator::all_reduce_async(at::Tensor tensor, ReduceOp op) {
  check_device_tensor(tensor, "all_reduce");
  cudaEvent_t ready = nullptr;
  CMAF_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
  // Owned from here, also when a check below throws.
  const std::shared_ptr<std::remove_pointer_t<cudaEvent_t>> event(ready, [](cudaEvent_t e) { cudaEventDestroy(e); });
  CMAF_CUDA_CHECK(cudaEventRecord(ready, nullptr));  // LibTorch's default stream
  return std::make_shared<Work>(thread_->submit([this, tensor, op, ready, event] {
    CMAF_CUDA_CHECK(cudaSetDevice(state_->device));
    CMAF_CUDA_CHECK(cudaStreamWaitEvent(state_->stream, ready, 0));
    const Armed armed(*watchdog_, "ncclAllReduce");
    CMAF_NCCL_CHECK(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                                  nccl_type(tensor.scalar_type()), nccl_op(op), state_->comm, state_->stream));
    CMAF_CUDA_CHECK(cudaStreamSynchronize(state_->stream));
  }));
}

WorkHandle NcclCommunicator::broadcast_async(at::Tensor tensor, int root) {
  check_device_tensor(tensor, "broadcast");
  return std::make_shared<Work>(thread_->submit([this, tensor, root] {
    CMAF_CUDA_CHECK(cudaSetDevice(state_->device));
    CMAF_CUDA_CHECK(cudaStreamSynchronize(nullptr));
    const Armed armed(*watchdog_, "ncclBroadcast");
    CMAF_NCCL_CHECK(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                                  nccl_type(tensor.scalar_type()), root, state_->comm, state_->stream));
    CMAF_CUDA_CHECK(cudaStreamSynchronize(state_->stream));
  }));
}

WorkHandle NcclCommunicator::all_gather_async(at::Tensor dense, at::Tensor output) {
  check_device_tensor(dense, "all_gather");
  check_gather_output(*this, dense, output);
  // The output is contiguous: gather in that order (a copy for a channels-last tensor).
  return std::make_shared<Work>(thread_->submit([this, tensor = dense.contiguous(), output] {
    CMAF_CUDA_CHECK(cudaSetDevice(state_->device));
    CMAF_CUDA_CHECK(cudaStreamSynchronize(nullptr));
    const Armed armed(*watchdog_, "ncclAllGather");
    CMAF_NCCL_CHECK(ncclAllGather(tensor.data_ptr(), output.data_ptr(), static_cast<size_t>(tensor.numel()),
                                  nccl_type(tensor.scalar_type()), state_->comm, state_->stream));
    CMAF_CUDA_CHECK(cudaStreamSynchronize(state_->stream));
  }));
}

WorkHandle NcclCommunicator::barrier_async() {
  // An all-reduce of one element on the NCCL communicator, as c10d's barrier: every rank must
  // enter it, and it stays in this communicator's order (the bootstrap communicator, which the
  // caller may be using meanwhile, is not touched from the communication thread).
  at::Tensor token = at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, state_->device));
  return std::make_shared<Work>(thread_->submit([this, token] {
    CMAF_CUDA_CHECK(cudaSetDevice(state_->device));
    CMAF_CUDA_CHECK(cudaStreamSynchronize(nullptr));
    const Armed armed(*watchdog_, "ncclAllReduce (barrier)");
    CMAF_NCCL_CHECK(ncclAllReduce(token.data_ptr(), token.data_ptr(), 1, ncclFloat32, ncclSum, state_->comm,
                                  state_->stream));
    CMAF_CUDA_CHECK(cudaStreamSynchronize(state_->stream));
  }));
}

}  // namespace cmaf::cluster
