#include "cluster/device_communicator.h"

#include "cluster/cluster_error.h"
#include "cmaf/config.h"
#if CMAF_WITH_CUDA
#include "cluster/nccl_communicator.h"
#endif

namespace cmaf::cluster {

std::unique_ptr<Communicator> make_cuda_communicator(Communicator& bootstrap, int device,
                                                     std::chrono::milliseconds stall_limit) {
#if CMAF_WITH_CUDA
  return std::make_unique<NcclCommunicator>(bootstrap, device, stall_limit);
#else
  (void)device;
  (void)stall_limit;
  throw ClusterError(str("rank ", bootstrap.rank(),
                         ": this build has no NCCL backend for CUDA tensors; configure with "
                         "-DCMAF_WITH_CUDA=ON against a CUDA-enabled LibTorch (docs/configuration.md, --device)"));
#endif
}

}  // namespace cmaf::cluster
