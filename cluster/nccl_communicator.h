// NCCL backend for CUDA tensors (built with CMAF_WITH_CUDA, or as the compile-only check target
// when the CUDA toolkit and NCCL are present).
//
// The NCCL unique id is created on rank 0 and broadcast over a bootstrap communicator (MPI).
// Collectives are enqueued by the communication thread on the communicator's own CUDA stream,
// after an event recorded at submission on the caller's current LibTorch stream (so they see the
// finished gradients and overlap later compute); the Work completes when the stream has run them.
// Every CUDA and NCCL call is checked: a failure names the call, the rank, the host and the
// library's error string with ncclGetLastError's detail (without a GPU: "cudaSetDevice failed:
// ... no CUDA-capable device"). While a collective runs, the communication thread polls the
// stream and ncclCommGetAsyncError: a failed peer or link aborts the communicator
// (ncclCommAbort) and fails that collective and every later one with NCCL's error.
//
// Stall limit: NCCL never times out, so a collective that a peer does not join would keep the
// communication thread waiting for the stream forever. Each collective is watched from its
// enqueueing to the end of its stream. With an MPI bootstrap (the trainer's world), by a
// heartbeat channel of its own over the bootstrap's ranks (heartbeat_monitor.h): past the limit
// every live rank logs which ranks have not reached the collective (alive but behind, or silent)
// and the job ends with status 75, as on the MPI backend. It has no busy mark (begin_local_work):
// a rank's work of its own ends in a collective of the bootstrap, which marks it there. Each rank
// then runs two heartbeat threads, each sending every period (to every other rank, or above
// all_to_all_ranks to rank 0 only: gathered). With any other bootstrap, by a CallWatchdog
// (phase_watchdog.h) that names only the call. ncclCommInitRank and ncclCommDestroy, which also
// wait for every rank, run under a PhaseWatchdog. Written against the NCCL 2.28 headers; like the
// rest of this backend it has not run on a GPU yet (none in development or CI).
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <functional>
#include <memory>

#include "cluster/comm_thread.h"
#include "cluster/communicator.h"
#include "cluster/heartbeat_monitor.h"
#include "cluster/phase_watchdog.h"

namespace cmaf::cluster {

class NcclCommunicator : public Communicator {
 public:
  // `bootstrap` (e.g. MpiCommunicator) carries the unique id; `device` is the CUDA device of
  // this rank, usually its node-local rank; `stall_limit` bounds each collective's wait.
  NcclCommunicator(Communicator& bootstrap, int device,
                   std::chrono::milliseconds stall_limit = kDefaultStallLimit);
  ~NcclCommunicator() override;

  std::string name() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  WorkHandle all_reduce_async(at::Tensor tensor, ReduceOp op) override;
  WorkHandle broadcast_async(at::Tensor tensor, int root) override;
  WorkHandle all_gather_async(at::Tensor tensor, at::Tensor output) override;
  WorkHandle barrier_async() override;

 private:
  struct State;  // the NCCL communicator, its stream and its failure
  void check_device_tensor(const at::Tensor& tensor, const std::string& operation,
                           ReduceOp op = ReduceOp::kSum) const;
  void check_nccl(ncclResult_t status, const char* call) const;
  // Records the caller's stream's event now; on the communication thread, `launch` enqueues the
  // collective on the communicator's stream after it, and the Work ends with the stream.
  WorkHandle enqueue(const char* call, int64_t bytes, std::function<ncclResult_t(ncclComm_t, cudaStream_t)> launch);
  void wait_for_stream(const char* call);  // communication thread only

  Communicator& bootstrap_;
  int rank_ = 0;
  int size_ = 1;
  std::string host_;
  std::chrono::milliseconds stall_limit_;
  std::unique_ptr<State> state_;
  int64_t sequence_ = 0;                      // collectives enqueued: the communication thread's
  std::unique_ptr<HeartbeatMonitor> monitor_;  // with an MPI bootstrap of several ranks
  std::unique_ptr<CallWatchdog> watchdog_;     // otherwise
  std::unique_ptr<CommThread> thread_;
};

}  // namespace cmaf::cluster
