// The collective-communication interface every backend implements (gloo's Device/Context
// shape): local (world size 1, or ranks as threads for tests), mpi (CPU tensors), nccl (CUDA
// tensors, built with CMAF_WITH_CUDA).
//
// Contract: collectives are issued in the same order on every rank. Tensors are reduced in
// place and must be dense (contiguous in some dimension order, e.g. channels-last; the same on
// every rank). Asynchronous calls return a Work to wait on; works complete in
// issue order (each communicator runs its collectives on one ordered communication thread), so
// overlapping calls can never pair up differently on different ranks. A backend that lacks an
// operation throws "communicator <name> does not support <operation> of <dtype>".
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>

namespace cmaf::cluster {

enum class ReduceOp { kSum, kAvg, kMax };
std::string to_string(ReduceOp op);

// Handle of an asynchronous collective.
class Work {
 public:
  explicit Work(std::shared_future<void> done) : done_(std::move(done)) {}
  // Blocks until the collective finished; rethrows its error. The time blocked counts towards
  // the calling thread's collective_wait_seconds().
  void wait() const;
  bool completed() const {
    return done_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  }

 private:
  std::shared_future<void> done_;
};
using WorkHandle = std::shared_ptr<Work>;

// Seconds the calling thread has spent blocked in Work::wait() (any communicator) since it
// started: where a rank waits for its peers, or for a transfer, instead of working. Per thread,
// so ranks as threads each count their own. For host collectives only: an NCCL Work completes
// when its stream does, so a wait for it also covers the caller's own GPU work queued before.
double collective_wait_seconds();

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string name() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // float32, float64, bfloat16 and int64 (not kAvg). bf16 is reduced in fp32 and rounded back:
  // the MPI and NCCL backends send it as 2 bytes and round each partial sum (one rounding with 2
  // ranks, up to n-1 with n), the local backend accumulates all ranks in fp32 and rounds once, so
  // with 2 ranks every backend gives the same bits. kAvg divides the reduced bf16 and rounds again.
  virtual WorkHandle all_reduce_async(at::Tensor tensor, ReduceOp op) = 0;
  virtual WorkHandle broadcast_async(at::Tensor tensor, int root) = 0;
  // Writes rank r's tensor to output[r]. `output`: contiguous, [size, *tensor.sizes()], the
  // tensor's dtype and device (check_gather_output); the tensor is gathered in contiguous order.
  virtual WorkHandle all_gather_async(at::Tensor tensor, at::Tensor output) = 0;
  virtual WorkHandle barrier_async() = 0;
  // A zeroed buffer that will be all-reduced again and again (gradient buckets). Collective:
  // every rank calls it in the same order with the same size. A backend may place it where its
  // collectives are fastest (mpi: node shared memory); the default is at::zeros.
  virtual at::Tensor new_buffer(int64_t elements, const at::TensorOptions& options) {
    return at::zeros({elements}, options);
  }

  // This rank is about to work alone, until its next collective, while its peers may wait for it
  // in a collective (rank 0 writing a checkpoint, a rank's share of inference). The mpi backend's
  // stall detection then gives it a longer limit than a rank that is stuck: see
  // heartbeat_monitor.h. (The nccl backend has none: such work ends in an mpi collective.)
  virtual void begin_local_work(const std::string& /*what*/) {}

  void all_reduce(const at::Tensor& tensor, ReduceOp op) { all_reduce_async(tensor, op)->wait(); }
  void broadcast(const at::Tensor& tensor, int root) { broadcast_async(tensor, root)->wait(); }
  // Returns [size, *tensor.sizes()] with rank r's tensor at index r.
  at::Tensor all_gather(const at::Tensor& tensor);
  void barrier() { barrier_async()->wait(); }
};

// Checks shared by the backends: dense, on the CPU for host backends, a supported dtype for the
// op; throws otherwise.
void check_collective_tensor(const Communicator& communicator, const at::Tensor& tensor,
                             const std::string& operation, ReduceOp op = ReduceOp::kSum);
// all_gather_async's output for `tensor`: throws InternalError naming what differs.
void check_gather_output(const Communicator& communicator, const at::Tensor& tensor, const at::Tensor& output);

}  // namespace cmaf::cluster
