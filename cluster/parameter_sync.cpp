#include "cluster/parameter_sync.h"

#include <torch/nn/module.h>

#include "cluster/cluster_error.h"
#include "common/fingerprint.h"

namespace cmaf::cluster {

std::vector<NamedTensor> named_tensors(const torch::nn::Module& module, const std::string& prefix, bool buffers) {
  std::vector<NamedTensor> out;
  for (const auto& p : module.named_parameters()) out.push_back({prefix + p.key(), p.value()});
  if (buffers) {
    for (NamedTensor& b : named_buffers(module, prefix)) out.push_back(std::move(b));
  }
  return out;
}

std::vector<NamedTensor> named_buffers(const torch::nn::Module& module, const std::string& prefix) {
  std::vector<NamedTensor> out;
  for (const auto& b : module.named_buffers()) out.push_back({prefix + b.key(), b.value()});
  return out;
}

bool all_finite(const std::vector<NamedTensor>& tensors, bool gradients) {
  std::vector<at::Tensor> finite;
  for (const auto& t : tensors) {
    const at::Tensor v = gradients ? t.tensor.grad() : t.tensor;
    if (v.defined() && v.is_floating_point()) finite.push_back(at::isfinite(v).all());
  }
  return finite.empty() || at::stack(finite).all().item<bool>();
}

void broadcast_tensors(const std::vector<NamedTensor>& tensors, Communicator& communicator, int root) {
  std::vector<WorkHandle> works;
  for (const NamedTensor& t : tensors) {
    works.push_back(communicator.broadcast_async(t.tensor.detach(), root));  // data, not autograd
  }
  for (const WorkHandle& work : works) work->wait();
}

void broadcast_packed(const std::vector<NamedTensor>& tensors, Communicator& communicator, int root) {
  at::NoGradGuard no_grad;
  std::vector<bool> done(tensors.size(), false);
  for (size_t first = 0; first < tensors.size(); ++first) {
    if (done[first]) continue;
    const at::ScalarType type = tensors[first].tensor.scalar_type();
    const at::Device device = tensors[first].tensor.device();
    std::vector<size_t> group;
    std::vector<at::Tensor> flat;
    for (size_t k = first; k < tensors.size(); ++k) {
      const at::Tensor& t = tensors[k].tensor;
      if (done[k] || t.scalar_type() != type || t.device() != device) continue;
      done[k] = true;
      group.push_back(k);
      flat.push_back(t.detach().reshape({-1}));
    }
    at::Tensor packed = at::cat(flat);
    communicator.broadcast(packed, root);
    int64_t offset = 0;
    for (size_t k : group) {
      const at::Tensor& t = tensors[k].tensor;
      t.detach().copy_(packed.narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

uint64_t tensors_fingerprint(const std::vector<NamedTensor>& tensors) {
  uint64_t hash = kFnvOffsetBasis;
  for (const NamedTensor& t : tensors) {
    const at::Tensor c = t.tensor.detach().to(at::kCPU).contiguous();
    hash = fnv1a(c.data_ptr(), static_cast<size_t>(c.numel()) * c.element_size(), hash);
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
