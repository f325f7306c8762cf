// MPI backend for CPU tensors. Owns a duplicate of the world communicator (its traffic cannot
// mix with anyone else's), with MPI_ERRORS_RETURN so that every failing call becomes a
// ClusterError naming the call, the rank, the host and MPI's error string. All MPI calls run on
// the communicator's CommThread.
#pragma once

#include <mpi.h>

#include <memory>

#include "cluster/comm_thread.h"
#include "cluster/communicator.h"

namespace cmaf::cluster {

class MpiCommunicator : public Communicator {
 public:
  // MPI must be initialised (ProcessRuntime) with at least MPI_THREAD_SERIALIZED.
  explicit MpiCommunicator(MPI_Comm parent = MPI_COMM_WORLD);
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
  void run_all_reduce(at::Tensor& tensor, ReduceOp op) const;

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::string host_;
  std::unique_ptr<CommThread> thread_;
};

}  // namespace cmaf::cluster
