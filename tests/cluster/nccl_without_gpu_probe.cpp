// Without a GPU (this machine and CI; ctest also hides any with CUDA_VISIBLE_DEVICES=), creating
// the NCCL communicator must fail with a clear error naming the CUDA call, the rank and the host,
// not crash. Exit 0 when it does, 77 (skipped) if a device was usable all the same.
#include <cstdio>
#include <string>

#include "cluster/cluster_error.h"
#include "cluster/local_communicator.h"
#include "cluster/nccl_communicator.h"

int main() {
  cmaf::cluster::LocalCommunicator bootstrap;
  try {
    cmaf::cluster::NcclCommunicator nccl(bootstrap, 0);
    std::printf("a CUDA device is present: NCCL communicator created (%s, %d rank)\n", nccl.name().c_str(),
                nccl.size());
    return 77;
  } catch (const cmaf::cluster::ClusterError& e) {
    const std::string message = e.what();
    std::printf("expected error without a GPU: %s\n", message.c_str());
    return message.find("cudaSetDevice(device) failed") != std::string::npos &&
                   message.find("[rank 0 on ") != std::string::npos
               ? 0
               : 1;
  }
}
