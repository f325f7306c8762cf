// The all-reduce benchmark behind `cmaformer bench allreduce` (nccl-tests units), checking its
// own results: float32 sum all-reduce over a size sweep on the world communicator, then the
// bucketed reducer over one 25 MiB tensor and over a preset's gradients (fp32, then bf16 on the
// wire), each against a raw all-reduce of the same bytes timed in the same iterations; last the
// overlap: the preset's real forward and backward on random slices with the bucketed reducer,
// and the fraction of the all-reduce time hidden behind backward (1 - the wait after backward /
// the same gradients all-reduced alone). Prints on rank 0; returns the number of wrong elements
// seen on this rank (0 when everything was right).
#pragma once

#include <cstdint>
#include <string>

#include "cluster/communicator.h"

namespace cmaf::core {

struct AllreduceBenchmarkOptions {
  int iterations = 10;
  int64_t max_mib = 256;
  std::string preset = "paper";  // whose gradients the reducer part reduces
  int overlap_steps = 3;         // timed training steps of the overlap part (0: skip it)
  int64_t overlap_batch = 1;     // slices per rank and step there, at the preset's input size
};

// `mpi`: optionally the same world with every collective through MPI_Allreduce (the world's sums
// going through node shared memory): then each raw figure is also measured on it, alternating.
int64_t run_allreduce_benchmark(cluster::Communicator& world, const AllreduceBenchmarkOptions& options,
                                cluster::Communicator* mpi = nullptr);

}  // namespace cmaf::core
