// The input-pipeline benchmark behind `cmaformer bench loader` (one process).
//
// 1. Loader throughput: slices/s from HDF5 through augmentation into batches, for each reader
//    thread count, with the shard cache off (every slice read from its file) and on.
// 2. What loading costs the training step: a CMAformer training step (student forward on the
//    labeled and strong unlabeled slices, cross-entropy + unlabeled entropy, backward, AdamW)
//    timed with batches popped from a live loader, divided by the same step on the same batches
//    held in memory as tensors. Passes alternate (memory, loader, memory, loader) so drift on a
//    shared machine hits both; the ratio of medians is reported (target <= 1.03).
// Checks itself: every loss finite, every batch the expected shape ("#wrong").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cmaf::core {

struct LoaderBenchmarkOptions {
  std::string data;               // dataset folder (cmaformer prep / synth output)
  std::string preset = "quarter";
  int64_t input_size = 0;         // 0: the preset's
  int64_t labeled_batch = 4;
  int64_t unlabeled_batch = 4;
  std::vector<int> reader_threads{1, 2};
  int64_t throughput_steps = 40;  // per throughput measurement
  int64_t train_steps = 6;        // per timed training pass (4 passes)
  int torch_threads = 2;
  int loader_threads = 1;         // for the training-step part
  uint64_t seed = 0;
};

// Prints the report; returns the number of wrong results (0 when all checks passed).
int64_t run_loader_benchmark(const LoaderBenchmarkOptions& options);

}  // namespace cmaf::core
