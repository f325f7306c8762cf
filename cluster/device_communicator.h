// The communicator for tensors on a GPU: NCCL, in a build configured with -DCMAF_WITH_CUDA=ON
// (against a CUDA-enabled LibTorch). In any other build it throws a ClusterError that says how
// to get one, so `--device cuda` fails at start-up rather than at the first all-reduce.
#pragma once

#include <memory>

#include "cluster/communicator.h"

namespace cmaf::cluster {

// `bootstrap` (the MPI world) carries NCCL's unique id; `device` is this rank's CUDA device.
std::unique_ptr<Communicator> make_cuda_communicator(Communicator& bootstrap, int device);

}  // namespace cmaf::cluster
