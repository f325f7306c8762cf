// Keeping replicas identical: rank 0's parameters and buffers are broadcast at start (and after
// resume), and a fingerprint all-gather checks that every rank holds the same bytes.
#pragma once

#include <cstdint>
#include <vector>

#include "cluster/communicator.h"
#include "cluster/gradient_reducer.h"

namespace cmaf::cluster {

// Overwrites every rank's tensors with `root`'s (values only, in the given order).
void broadcast_tensors(const std::vector<NamedTensor>& tensors, Communicator& communicator, int root = 0);

// FNV-1a over the bytes of every tensor, in order.
uint64_t tensors_fingerprint(const std::vector<NamedTensor>& tensors);

// Throws ClusterError naming the ranks whose fingerprint differs from rank 0's. `what` names
// the state in the message ("parameters after resume").
void check_replicas_identical(const std::vector<NamedTensor>& tensors, Communicator& communicator,
                              const std::string& what);

}  // namespace cmaf::cluster
