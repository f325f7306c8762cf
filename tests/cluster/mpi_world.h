#pragma once

#include "cluster/communicator.h"
#include "cluster/process_runtime.h"

namespace cmaf::test {
// The MPI world communicator of the test process (set up by mpi_test_main.cpp).
cluster::Communicator& mpi_world();
// The process runtime that mpi_test_main.cpp started (MPI initialised, 1 LibTorch thread).
const cluster::ProcessRuntime& mpi_runtime();
}  // namespace cmaf::test
