// The all-reduce benchmark behind `cmaformer bench allreduce` (nccl-tests units), checking its
// own results: float32 sum all-reduce over a size sweep on the world communicator, then the
// bucketed reducer over one 25 MiB tensor and over a preset's gradients (fp32, then bf16 on the
// wire), each against a raw all-reduce of the same bytes timed in the same iterations. Prints on rank 0;
// returns the number of wrong elements seen on this rank (0 when everything was right).
#pragma once

#include <cstdint>
#include <string>

#include "cluster/communicator.h"

namespace cmaf::core {

struct AllreduceBenchmarkOptions {
  int iterations = 10;
  int64_t max_mib = 256;
  std::string preset = "paper";  // whose gradients the reducer part reduces
};

// `mpi`: optionally the same world with every collective through MPI_Allreduce (the world's sums
// going through node shared memory): then each raw figure is also measured on it, alternating.
int64_t run_allreduce_benchmark(cluster::Communicator& world, const AllreduceBenchmarkOptions& options,
                                cluster::Communicator* mpi = nullptr);

}  // namespace cmaf::core
