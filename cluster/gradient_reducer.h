// Averaging gradients across ranks (data parallelism), two implementations of one contract:
//
//   reducer.prepare_for_backward();   // before loss.backward()
//   loss.backward();
//   reducer.finish();                 // every parameter's .grad = mean over ranks
//   optimizer.step();
//
// Both average the same way: each rank's gradient times float(1 / world size), then a sum
// all-reduce (no division pass after the collective).
//
// ReferenceReducer: one all-reduce per gradient after backward; obviously correct.
// BucketedReducer (PyTorch DDP's design): parameters in reverse registration order (roughly the
// order backward produces their gradients) grouped into buckets (first kFirstBucketBytes, then
// kDefaultBucketBytes). After each step .grad is a view into its bucket (DDP's
// gradient_as_bucket_view). prepare_for_backward() resets .grad (no zeroing pass); a hook after
// each gradient's accumulation moves autograd's fresh gradient into the bucket, scaled by
// 1 / world size in the same pass, and points .grad there; later micro-batches of an accumulation
// add straight into the bucket. A full bucket's all-reduce starts at once, asynchronously,
// overlapping the rest of backward, in place.
// Buckets start in index order on every rank (a bucket that fills early waits for its
// predecessors), so the collectives pair up identically everywhere.
//
// prepare_for_backward() starts from no gradient: gradients are not accumulated across steps.
//
// A parameter without a gradient after the step's backward(s) is an error naming it, raised on
// every rank (each finish() also sums a per-rank count of missing gradients with the buckets):
// every rank must reduce the same tensors, and an unused parameter means a module forward never
// calls. Its bucket is still reduced (zeros in its place), so that the ranks' collectives pair up
// whichever rank skipped it. Over micro-batches, a parameter needs a gradient in at least one.
#pragma once

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cluster/communicator.h"

namespace cmaf::cluster {

inline constexpr int64_t kFirstBucketBytes = int64_t{1} << 20;    // 1 MiB, as c10d
inline constexpr int64_t kDefaultBucketBytes = int64_t{25} << 20;  // 25 MiB, as c10d

// Each rank's share of the average is g * share_scale(n), then the shares are summed: both
// reducers use this one factor, so they give the same bits.
inline float share_scale(int world_size) { return 1.0f / static_cast<float>(world_size); }

struct NamedTensor {
  std::string name;
  at::Tensor tensor;
};

class GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  virtual void prepare_for_backward() {}
  // Gradient accumulation over micro-batches: call before each micro-batch's backward instead of
  // prepare_for_backward(); `first` starts from zero gradients, and only the `last` backward
  // communicates (finish() after it). Gradients of the micro-batches add up in place. The default
  // suits reducers that reduce everything in finish(): the caller zeroes .grad before the first.
  virtual void prepare_for_micro_backward(bool first, bool last) {
    if (first && last) prepare_for_backward();
  }
  virtual void finish() = 0;
};

class ReferenceReducer : public GradientReducer {
 public:
  ReferenceReducer(std::vector<NamedTensor> parameters, Communicator& communicator);
  void finish() override;

 private:
  std::vector<NamedTensor> parameters_;
  Communicator& communicator_;
};

struct BucketOptions {
  int64_t first_bucket_bytes = kFirstBucketBytes;
  int64_t bucket_bytes = kDefaultBucketBytes;
  // Send gradients as bf16 (half the bytes): each rank's gradient divided by the world size and
  // rounded to bf16, summed in bf16 (communicator.h), written back to the fp32 .grad.
  bool bf16_wire = false;
};

class BucketedReducer : public GradientReducer {
 public:
  BucketedReducer(std::vector<NamedTensor> parameters, Communicator& communicator,
                  BucketOptions options = {});
  ~BucketedReducer() override;
  BucketedReducer(const BucketedReducer&) = delete;
  BucketedReducer& operator=(const BucketedReducer&) = delete;

  void prepare_for_backward() override { prepare_for_micro_backward(true, true); }
  void prepare_for_micro_backward(bool first, bool last) override;
  void finish() override;

  int64_t bucket_count() const { return static_cast<int64_t>(buckets_.size()); }
  // Parameter names per bucket, in bucket order (for logs and tests).
  std::vector<std::vector<std::string>> bucket_layout() const;

 private:
  struct Bucket {
    std::vector<size_t> parameters;  // indices into parameters_, in bucket order
    at::Tensor buffer;  // fp32, all gradients of the bucket back to back
    at::Tensor wire;    // what is sent: buffer itself, or (bf16_wire) a bf16 tensor of its size
    int64_t pending = 0;
    WorkHandle work;
  };

  void on_gradient_ready(size_t parameter);
  void launch_ready_buckets();
  at::Tensor bucket_view(size_t parameter) const;
  float share_scale() const { return cluster::share_scale(communicator_.size()); }

  std::vector<NamedTensor> parameters_;
  Communicator& communicator_;
  BucketOptions options_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;   // parameter -> bucket
  std::vector<int64_t> offset_of_;  // parameter -> offset in its bucket
  std::vector<bool> received_;      // parameter -> gradient accumulated in this backward
  std::vector<bool> accumulated_;   // parameter -> in its bucket since the first micro-batch
  // Post-accumulation hooks on each parameter's AccumulateGrad node (kept alive here).
  std::vector<std::pair<std::shared_ptr<torch::autograd::Node>, uintptr_t>> hooks_;
  size_t next_launch_ = 0;
  bool local_only_ = false;         // an accumulation backward: no bucket is launched
};

}  // namespace cmaf::cluster
