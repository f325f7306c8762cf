// Errors of the cluster layer: a failed MPI/NCCL call, a rank that disagrees with the others.
#pragma once

#include "common/error.h"

namespace cmaf::cluster {

class ClusterError : public Error {
 public:
  using Error::Error;
};

}  // namespace cmaf::cluster
