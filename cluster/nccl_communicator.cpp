#include "cluster/nccl_communicator.h"

#include <cuda_runtime.h>
#include <glog/logging.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <type_traits>

#include "cluster/cluster_error.h"
#include "cluster/mpi_communicator.h"
#include "cluster/process_runtime.h"
#include "cmaf/config.h"
#if CMAF_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

namespace cmaf::cluster {

struct NcclCommunicator::State {
  int device = 0;
  ncclComm_t comm = nullptr;  // null after ncclCommAbort
  cudaStream_t stream = nullptr;
  std::string failed;         // the asynchronous error that aborted the communicator
  State() = default;
  State(const State&) = delete;
  State& operator=(const State&) = delete;
  // Where the constructor threw after creating them (~NcclCommunicator frees them itself and
  // leaves nulls): aborted, not destroyed, as the peers may never get that far.
  ~State() {
    if (stream != nullptr) cudaStreamDestroy(stream);
    if (comm != nullptr) ncclCommAbort(comm);
  }
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

#define CMAF_NCCL_CHECK(call) check_nccl((call), #call)

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
  thread_ = std::make_unique<CommThread>();
  // The collectives' stall watch, last (its destructor waits for every rank): a heartbeat channel
  // that names missing ranks where the bootstrap is MPI (so on every rank: one binary, one
  // launcher), else a watchdog that names the call.
  if (auto* mpi = dynamic_cast<MpiCommunicator*>(&bootstrap_); mpi != nullptr) {
    monitor_ = mpi->new_heartbeat_monitor(stall_limit_);
  }
  if (!monitor_) {
    watchdog_ = std::make_unique<CallWatchdog>(stall_limit_, str("rank ", rank_, " on ", host_),
                                               WatchdogEnd::kAbortJob);
  }
}

NcclCommunicator::~NcclCommunicator() {
  PhaseWatchdog watchdog("the NCCL communicator's shut-down", stall_limit_, str("rank ", rank_, " on ", host_),
                         WatchdogEnd::kAbortJob);
  watchdog.at("the collectives still queued");
  thread_.reset();
  watchdog_.reset();
  watchdog.at("the heartbeat channel's last MPI_Barrier");
  monitor_.reset();
  watchdog.at("ncclCommDestroy");
  // A destructor cannot throw: failures are logged with the rank and host.
  if (state_->stream != nullptr) {
    const cudaError_t status = cudaStreamDestroy(state_->stream);
    state_->stream = nullptr;
    if (status != cudaSuccess) {
      LOG(WARNING) << "[rank " << rank_ << " on " << host_ << "] cudaStreamDestroy failed: " << cudaGetErrorString(status);
    }
  }
  if (state_->comm != nullptr) {
    const ncclResult_t status = ncclCommDestroy(state_->comm);
    state_->comm = nullptr;
    if (status != ncclSuccess) {
      LOG(WARNING) << "[rank " << rank_ << " on " << host_ << "] ncclCommDestroy failed: " << ncclGetErrorString(status);
    }
  }
}

namespace {
// Watches one collective, from its enqueueing (which may itself wait for peers: NCCL connects
// lazily, at a communicator's first collective) to the end of its stream: the heartbeat
// channel, or else the call watchdog.
class Watched {
 public:
  Watched(HeartbeatMonitor* monitor, CallWatchdog* watchdog, int64_t sequence, const char* call, int64_t bytes)
      : monitor_(monitor), watchdog_(watchdog) {
    if (monitor_ != nullptr) {
      monitor_->entered(sequence, call, bytes);
    } else if (watchdog_ != nullptr) {
      watchdog_->arm(call);
    }
  }
  ~Watched() {
    if (monitor_ != nullptr) {
      monitor_->left();
    } else if (watchdog_ != nullptr) {
      watchdog_->disarm();
    }
  }
  Watched(const Watched&) = delete;
  Watched& operator=(const Watched&) = delete;

 private:
  HeartbeatMonitor* monitor_;
  CallWatchdog* watchdog_;
};

// Makes `device` current on this thread for a scope, and restores the caller's device.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    if (cudaGetDevice(&previous_) == cudaSuccess && previous_ != device) {
      changed_ = cudaSetDevice(device) == cudaSuccess;
    }
  }
  ~DeviceScope() {
    if (changed_) cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

// The stream the caller's kernels run on: LibTorch's current stream of `device` (the default
// stream, or the one a CUDAStreamGuard set). The compile-only check target links a CPU LibTorch,
// where no CUDA tensor can reach a collective, and uses the legacy default stream.
cudaStream_t current_stream(int device) {
#if CMAF_WITH_CUDA
  return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream();
#else
  (void)device;
  return nullptr;
#endif
}
}  // namespace

void NcclCommunicator::check_device_tensor(const at::Tensor& tensor, const std::string& operation, ReduceOp op) const {
  check_collective_tensor(*this, tensor, operation, op);  // refuses int64 averages, as the other backends
  if (!tensor.is_cuda()) {
    throw InternalError(str("communicator nccl does not support ", operation, " of CPU tensors (",
                            at::toString(tensor.scalar_type()), "): use the mpi communicator"));
  }
  if (tensor.device().index() != state_->device) {
    throw InternalError(str("communicator nccl of rank ", rank_, " runs on cuda:", state_->device, ", got a tensor on ",
                            tensor.device().str()));
  }
}

void NcclCommunicator::check_nccl(ncclResult_t status, const char* call) const {
  if (status == ncclSuccess) return;
  const char* detail = state_->comm != nullptr ? ncclGetLastError(state_->comm) : nullptr;
  throw ClusterError(str("[rank ", rank_, " on ", host_, "] ", call, " failed: ", ncclGetErrorString(status),
                         detail != nullptr && *detail != '\0' ? str(" (", detail, ")") : std::string()));
}

WorkHandle NcclCommunicator::enqueue(const char* call, int64_t bytes,
                                     std::function<ncclResult_t(ncclComm_t, cudaStream_t)> launch) {
  // What the caller has queued on its stream so far (the gradients, the tensor's values) must be
  // done before NCCL reads: an event recorded now, on the caller's current stream; the
  // communicator's stream waits for it on the GPU, and later compute is not waited for.
  std::shared_ptr<std::remove_pointer_t<cudaEvent_t>> event;
  {
    const DeviceScope scope(state_->device);
    cudaEvent_t ready = nullptr;
    CMAF_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    event.reset(ready, [](cudaEvent_t e) { cudaEventDestroy(e); });  // owned, also when the record fails
    CMAF_CUDA_CHECK(cudaEventRecord(ready, current_stream(state_->device)));
  }
  return std::make_shared<Work>(thread_->submit([this, call, bytes, launch = std::move(launch), event] {
    if (!state_->failed.empty()) {
      throw ClusterError(str("[rank ", rank_, " on ", host_, "] ", call, ": the NCCL communicator was aborted after an "
                             "earlier error: ", state_->failed));
    }
    CMAF_CUDA_CHECK(cudaSetDevice(state_->device));
    CMAF_CUDA_CHECK(cudaStreamWaitEvent(state_->stream, event.get(), 0));
    // Numbered only once it is sure to be enqueued: a rank whose communicator failed above
    // does not count collectives it never started.
    const Watched watched(monitor_.get(), watchdog_.get(), ++sequence_, call, bytes);
    check_nccl(launch(state_->comm, state_->stream), call);
    wait_for_stream(call);
  }));
}

void NcclCommunicator::wait_for_stream(const char* call) {
  // Polls the stream and NCCL's asynchronous error (a peer or link that failed leaves the kernel
  // spinning, and cudaStreamSynchronize would never return): on an error the communicator is
  // aborted, which ends its kernels, and this and every later collective fail with NCCL's text.
  for (int polls = 0;; ++polls) {
    const cudaError_t state = cudaStreamQuery(state_->stream);
    if (state == cudaSuccess) return;
    if (state != cudaErrorNotReady) {
      throw ClusterError(str("[rank ", rank_, " on ", host_, "] ", call, ": cudaStreamQuery failed: ",
                             cudaGetErrorString(state)));
    }
    ncclResult_t async = ncclSuccess;
    check_nccl(ncclCommGetAsyncError(state_->comm, &async), "ncclCommGetAsyncError");
    if (async != ncclSuccess && async != ncclInProgress) {
      const char* detail = ncclGetLastError(state_->comm);
      state_->failed = str(call, " failed asynchronously: ", ncclGetErrorString(async),
                           detail != nullptr && *detail != '\0' ? str(" (", detail, ")") : std::string());
      const ncclResult_t aborted = ncclCommAbort(state_->comm);
      state_->comm = nullptr;
      throw ClusterError(str("[rank ", rank_, " on ", host_, "] ", state_->failed, "; communicator aborted",
                             aborted == ncclSuccess ? std::string() : str(" (ncclCommAbort: ", ncclGetErrorString(aborted), ")")));
    }
    // Short collectives: a few microseconds of spinning; long ones: 50 us naps, no busy core.
    if (polls < 200) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
}

WorkHandle NcclCommunicator::all_reduce_async(at::Tensor tensor, ReduceOp op) {
  check_device_tensor(tensor, "all_reduce", op);
  const auto bytes = static_cast<int64_t>(tensor.nbytes());
  return enqueue("ncclAllReduce", bytes, [tensor, op](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                         nccl_type(tensor.scalar_type()), nccl_op(op), comm, stream);
  });
}

WorkHandle NcclCommunicator::broadcast_async(at::Tensor tensor, int root) {
  check_device_tensor(tensor, "broadcast");
  CMAF_CHECK(root >= 0 && root < size_, "broadcast root ", root, " of ", size_, " ranks");
  const auto bytes = static_cast<int64_t>(tensor.nbytes());
  return enqueue("ncclBroadcast", bytes, [tensor, root](ncclComm_t comm, cudaStream_t stream) {
    return ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                         nccl_type(tensor.scalar_type()), root, comm, stream);
  });
}

WorkHandle NcclCommunicator::all_gather_async(at::Tensor dense, at::Tensor output) {
  check_device_tensor(dense, "all_gather");
  check_gather_output(*this, dense, output);
  // The output is contiguous: gather in that order (a copy for a channels-last tensor, made on
  // the caller's stream before the event).
  const auto bytes = static_cast<int64_t>(dense.nbytes());
  return enqueue("ncclAllGather", bytes, [tensor = dense.contiguous(), output](ncclComm_t comm, cudaStream_t s) {
    return ncclAllGather(tensor.data_ptr(), output.data_ptr(), static_cast<size_t>(tensor.numel()),
                         nccl_type(tensor.scalar_type()), comm, s);
  });
}

WorkHandle NcclCommunicator::barrier_async() {
  // An all-reduce of one element on the NCCL communicator, as c10d's barrier: every rank must
  // enter it, and it stays in this communicator's order (the bootstrap communicator, which the
  // caller may be using meanwhile, is not touched from the communication thread).
  at::Tensor token = at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, state_->device));
  return enqueue("ncclAllReduce (barrier)", 4, [token](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllReduce(token.data_ptr(), token.data_ptr(), 1, ncclFloat32, ncclSum, comm, stream);
  });
}

}  // namespace cmaf::cluster
