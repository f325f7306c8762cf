#include "cluster/parameter_sync.h"

#include "cluster/cluster_error.h"

namespace cmaf::cluster {

void broadcast_tensors(const std::vector<NamedTensor>& tensors, Communicator& communicator, int root) {
  std::vector<WorkHandle> works;
  for (const NamedTensor& t : tensors) {
    works.push_back(communicator.broadcast_async(t.tensor.detach(), root));  // data, not autograd
  }
  for (const WorkHandle& work : works) work->wait();
}

uint64_t tensors_fingerprint(const std::vector<NamedTensor>& tensors) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (const NamedTensor& t : tensors) {
    const at::Tensor c = t.tensor.detach().contiguous();
    const auto* bytes = static_cast<const unsigned char*>(c.data_ptr());
    const size_t n = static_cast<size_t>(c.numel()) * c.element_size();
    for (size_t i = 0; i < n; ++i) {
      hash ^= bytes[i];
      hash *= 0x100000001b3ULL;
    }
  }
  return hash;
}

void check_replicas_identical(const std::vector<NamedTensor>& tensors, Communicator& communicator,
                              const std::string& what) {
  const uint64_t mine = tensors_fingerprint(tensors);
  const at::Tensor local = at::tensor({static_cast<int64_t>(mine)}, at::kLong);
  const at::Tensor all = communicator.all_gather(local).reshape({-1});
  std::string differing;
  for (int r = 1; r < communicator.size(); ++r) {
    if (all[r].item<int64_t>() != all[0].item<int64_t>()) differing += (differing.empty() ? "" : ", ") + std::to_string(r);
  }
  if (!differing.empty()) {
    throw ClusterError(str(what, " differ between ranks: rank(s) ", differing,
                           " disagree with rank 0 (fingerprints of ", tensors.size(), " tensors)"));
  }
}

}  // namespace cmaf::cluster
