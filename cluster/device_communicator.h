// The communicator for tensors on a GPU: NCCL, in a build configured with -DCMAF_WITH_CUDA=ON
// (against a CUDA-enabled LibTorch). In any other build it throws a ClusterError that says how
// to get one, so `--device cuda` fails at start-up rather than at the first all-reduce.
#pragma once

#include <chrono>
#include <memory>

#include "cluster/communicator.h"
#include "cluster/phase_watchdog.h"

namespace cmaf::cluster {

// `bootstrap` (the MPI world) carries NCCL's unique id; `device` is this rank's CUDA device;
// `stall_limit` bounds each collective's wait (nccl_communicator.h).
std::unique_ptr<Communicator> make_cuda_communicator(Communicator& bootstrap, int device,
                                                     std::chrono::milliseconds stall_limit = kDefaultStallLimit);

}  // namespace cmaf::cluster
