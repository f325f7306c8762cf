// Keeping replicas identical: rank 0's parameters and buffers are broadcast at start (and after
// resume), and a fingerprint all-gather checks that every rank holds the same bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cluster/communicator.h"
#include "cluster/gradient_reducer.h"

namespace torch::nn {
class Module;
}

namespace cmaf::cluster {

// A module's parameters (and, with `buffers`, its buffers after them), named `prefix` + the
// module's own names, in registration order.
std::vector<NamedTensor> named_tensors(const torch::nn::Module& module, const std::string& prefix, bool buffers);
// Its buffers alone (batch-norm statistics), named the same way.
std::vector<NamedTensor> named_buffers(const torch::nn::Module& module, const std::string& prefix);

// Whether every floating-point tensor (or, with `gradients`, every defined gradient) is finite:
// one host read for all of them (on a GPU, one synchronisation instead of one per tensor).
bool all_finite(const std::vector<NamedTensor>& tensors, bool gradients);

// Overwrites every rank's tensors with `root`'s (values only, in the given order).
void broadcast_tensors(const std::vector<NamedTensor>& tensors, Communicator& communicator, int root = 0);
// The same in one broadcast per dtype (the tensors packed back to back): for many small tensors
// broadcast every step, such as batch-norm buffers.
void broadcast_packed(const std::vector<NamedTensor>& tensors, Communicator& communicator, int root = 0);

// FNV-1a over the bytes of every tensor, in order.
uint64_t tensors_fingerprint(const std::vector<NamedTensor>& tensors);

// Throws ClusterError naming the ranks whose fingerprint differs from rank 0's. `what` names
// the state in the message ("parameters after resume").
void check_replicas_identical(const std::vector<NamedTensor>& tensors, Communicator& communicator,
                              const std::string& what);

}  // namespace cmaf::cluster
