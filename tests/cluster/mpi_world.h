#pragma once

#include "cluster/communicator.h"

namespace cmaf::test {
// The MPI world communicator of the test process (set up by mpi_test_main.cpp).
cluster::Communicator& mpi_world();
}  // namespace cmaf::test
