// The input pipeline of one rank: background reader threads turn the (case, slice) requests of
// each step into augmented, resized, collated batches in a bounded queue; the training step only
// pops.
//
// Contracts:
// - Batches come out in step order. The batch of step k is a pure function of (request of step k,
//   seed, rank, k): thread count, cache and timing never change a value, so resuming at step k
//   replays what an uninterrupted run read at step k.
// - Each reader thread opens its own CaseFile handles (HDF5 handles are never shared between
//   threads or forks). The step source is called from reader threads: it must be thread-safe
//   (a pure function of the step, as sharding::StepSampler is).
// - At most `queue_steps` batches are ever built ahead of the consumer.
// - The shard is cached in memory (whole volumes, read once) when its size fits
//   `cache_budget_bytes`; otherwise every slice is read from its file.
// - An error in a reader thread (missing file, bad slice, a label not usable for training)
//   is re-thrown by next() for the step that needed it, naming the case file and the slice.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "datastore/slice_augment.h"

namespace cmaf::datastore {

inline constexpr int64_t kDefaultQueueSteps = 4;
inline constexpr int64_t kDefaultCacheBudgetBytes = int64_t{2} << 30;  // 2 GiB per rank
inline constexpr int kDefaultLoaderThreads = 2;

struct SliceRequest {
  std::string file;  // relative to the dataset folder, as in the manifest
  int64_t slice = 0;
};

struct StepRequest {
  std::vector<SliceRequest> labeled;
  std::vector<SliceRequest> unlabeled;
};

using StepSource = std::function<StepRequest(int64_t step)>;

struct LoaderOptions {
  std::string dataset_dir;
  int64_t input_size = 224;  // network input, square
  int threads = kDefaultLoaderThreads;
  int64_t queue_steps = kDefaultQueueSteps;
  int64_t cache_budget_bytes = kDefaultCacheBudgetBytes;
  // Files the source may request (the rank's shard): sizes the cache. Others are still read.
  std::vector<std::string> shard_files;
  AugmentOptions augment;
  uint64_t seed = 0;
  int rank = 0;
};

struct Batch {
  int64_t step = 0;
  int64_t size = 0;                     // S: slices are S x S
  std::vector<float> labeled_image;     // Bl x S x S
  std::vector<uint8_t> labeled_label;   // Bl x S x S
  std::vector<float> weak_image;        // Bu x S x S, geometry only (teacher)
  std::vector<float> strong_image;      // Bu x S x S, same geometry + intensity (student)
  std::vector<SliceRequest> labeled_refs;
  std::vector<SliceRequest> unlabeled_refs;
  std::vector<GeometricParams> unlabeled_geometry;  // to warp pool targets the same way
  int64_t labeled_count() const { return static_cast<int64_t>(labeled_refs.size()); }
  int64_t unlabeled_count() const { return static_cast<int64_t>(unlabeled_refs.size()); }
};

struct LoaderStats {
  bool cache_enabled = false;
  int64_t shard_bytes = 0;      // what caching the shard takes
  int64_t cached_cases = 0;
  int64_t slices_built = 0;
  int64_t max_buffered = 0;     // most batches ever waiting in the queue
  double consumer_wait_seconds = 0.0;  // time next() spent waiting for a batch
};

class BatchLoader {
 public:
  // Starts the reader threads at `first_step`. Throws InputError for bad options, a missing
  // manifest or a shard file it does not list.
  BatchLoader(LoaderOptions options, StepSource source, int64_t first_step);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // The batch of the next step (blocks until it is ready).
  Batch next();
  int64_t next_step() const;
  LoaderStats stats() const;

 private:
  struct CachedVolume;
  struct ReaderState;
  struct Slot {
    std::unique_ptr<Batch> batch;
    std::exception_ptr error;
  };

  void reader_loop(int thread_index);
  Batch build(int64_t step, ReaderState& reader);
  void read_slice(const SliceRequest& request, bool with_label, ReaderState& reader, std::vector<float>* image,
                  std::vector<uint8_t>* label, int64_t* h, int64_t* w);
  std::shared_ptr<const CachedVolume> cached(const std::string& file, bool with_label, ReaderState& reader);

  LoaderOptions options_;
  StepSource source_;
  std::map<std::string, int64_t> slice_bytes_;  // per shard file: bytes of one image + label slice

  mutable std::mutex mutex_;
  std::condition_variable space_;
  std::condition_variable ready_;
  bool stop_ = false;
  int64_t consumer_step_ = 0;
  int64_t next_claim_ = 0;
  std::map<int64_t, Slot> slots_;
  LoaderStats stats_;

  std::mutex cache_mutex_;
  std::map<std::string, std::shared_ptr<const CachedVolume>> cache_;

  std::vector<std::thread> threads_;
};

}  // namespace cmaf::datastore
