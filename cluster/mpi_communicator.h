// MPI backend for CPU tensors. Owns a duplicate of the world communicator (its traffic cannot
// mix with anyone else's), with MPI_ERRORS_RETURN so that every failing call becomes a
// ClusterError naming the call, the rank, the host and MPI's error string. All MPI calls run on
// the communicator's CommThread. bf16 tensors travel as 2 bytes an element, reduced by
// user-defined ops (cluster/bf16_wire.h): each partial sum is rounded to bf16, as NCCL does.
//
// Stall detection (HeartbeatMonitor): a collective that has waited longer than the stall limit
// is reported on every live rank with the ranks that have not arrived, and the job aborts with
// exit status kStallExitCode. It needs MPI_THREAD_MULTIPLE (the monitor's thread calls MPI
// beside the communication thread); without it a warning says stall detection is off.
#pragma once

#include <mpi.h>

#include <memory>

#include "cluster/comm_thread.h"
#include "cluster/communicator.h"
#include "cluster/heartbeat_monitor.h"

namespace cmaf::cluster {

struct StallOptions {
  std::chrono::milliseconds limit = kDefaultStallLimit;
  std::chrono::milliseconds heartbeat_period = kDefaultHeartbeatPeriod;
};

// MPI's text for an error code (MPI_Error_string).
std::string mpi_error_text(int code);

class MpiCommunicator : public Communicator {
 public:
  // MPI must be initialised (ProcessRuntime) with at least MPI_THREAD_SERIALIZED.
  explicit MpiCommunicator(MPI_Comm parent = MPI_COMM_WORLD, StallOptions stall = {});
  ~MpiCommunicator() override;

  std::string name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  WorkHandle all_reduce_async(at::Tensor tensor, ReduceOp op) override;
  WorkHandle broadcast_async(at::Tensor tensor, int root) override;
  at::Tensor all_gather(const at::Tensor& tensor) override;
  void barrier() override;

 private:
  void check(int code, const char* call) const;
  void run_all_reduce(at::Tensor& tensor, ReduceOp op);
  MPI_Op mpi_op(at::ScalarType type, ReduceOp op) const;
  // Numbers the collective and tells the watchdog; the returned guard tells it the end.
  struct CollectiveScope {
    HeartbeatMonitor* monitor;
    ~CollectiveScope() {
      if (monitor) monitor->left();
    }
  };
  CollectiveScope begin_collective(const char* call, int64_t bytes);

  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Op bf16_sum_ = MPI_OP_NULL;  // user-defined ops for bf16 (MPI has no such type)
  MPI_Op bf16_max_ = MPI_OP_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::string host_;
  StallOptions stall_;
  int64_t sequence_ = 0;  // collectives issued (same numbering on every rank)
  std::unique_ptr<HeartbeatMonitor> monitor_;
  std::unique_ptr<CommThread> thread_;
};

}  // namespace cmaf::cluster
