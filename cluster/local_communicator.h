// The in-process backend: world size 1 (a plain single process), or a group of ranks that are
// threads of one process, for fast, debuggable multi-rank tests. Reductions add the ranks'
// tensors in rank order 0..n-1 (bf16 in fp32), so results are deterministic and reproducible.
#pragma once

#include <memory>

#include "cluster/comm_thread.h"
#include "cluster/communicator.h"

namespace cmaf::cluster {

class LocalGroup;

class LocalCommunicator : public Communicator {
 public:
  LocalCommunicator();  // world size 1
  LocalCommunicator(std::shared_ptr<LocalGroup> group, int rank);

  std::string name() const override { return "local"; }
  int rank() const override { return rank_; }
  int size() const override;
  WorkHandle all_reduce_async(at::Tensor tensor, ReduceOp op) override;
  WorkHandle broadcast_async(at::Tensor tensor, int root) override;
  WorkHandle all_gather_async(at::Tensor tensor, at::Tensor output) override;
  WorkHandle barrier_async() override;

 private:
  std::shared_ptr<LocalGroup> group_;
  int rank_ = 0;
  std::unique_ptr<CommThread> thread_;
};

// Creates `size` communicators that exchange data through shared memory; communicator r is
// meant to be used by the thread playing rank r.
std::vector<std::unique_ptr<Communicator>> make_local_group(int size);

}  // namespace cmaf::cluster
