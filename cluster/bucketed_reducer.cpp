#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "cluster/bf16_wire.h"
#include "cluster/cluster_error.h"
#include "cluster/gradient_reducer.h"

namespace cmaf::cluster {
namespace {

// Runs after AccumulateGrad has written the gradient into .grad (our bucket view).
class AccumulatedHook : public torch::autograd::FunctionPostHook {
 public:
  explicit AccumulatedHook(std::function<void()> on_ready) : on_ready_(std::move(on_ready)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    on_ready_();
    return outputs;
  }

 private:
  std::function<void()> on_ready_;
};

}  // namespace

BucketedReducer::BucketedReducer(std::vector<NamedTensor> parameters, Communicator& communicator,
                                 BucketOptions options)
    : parameters_(std::move(parameters)), communicator_(communicator), options_(options) {
  const size_t n = parameters_.size();
  bucket_of_.assign(n, 0);
  offset_of_.assign(n, 0);
  received_.assign(n, false);
  accumulated_.assign(n, false);
  // Reverse registration order: the last layers' gradients come first in backward.
  int64_t bucket_bytes = 0;
  for (size_t k = n; k-- > 0;) {
    const at::Tensor& p = parameters_[k].tensor;
    CMAF_CHECK(p.scalar_type() == at::kFloat, "bucketed reducer expects fp32 parameters: ", parameters_[k].name);
    const int64_t bytes = p.numel() * static_cast<int64_t>(sizeof(float));
    const int64_t cap = buckets_.size() <= 1 ? options_.first_bucket_bytes : options_.bucket_bytes;
    if (buckets_.empty() || (bucket_bytes > 0 && bucket_bytes + bytes > cap)) {
      buckets_.emplace_back();
      bucket_bytes = 0;
    }
    Bucket& bucket = buckets_.back();
    const int64_t offset = bucket_bytes / static_cast<int64_t>(sizeof(float));
    bucket.parameters.push_back(k);
    bucket_of_[k] = buckets_.size() - 1;
    offset_of_[k] = offset;
    bucket_bytes += bytes;
  }
  for (Bucket& bucket : buckets_) {
    int64_t elements = 0;
    for (size_t k : bucket.parameters) elements += parameters_[k].tensor.numel();
    const at::TensorOptions fp32 = parameters_[bucket.parameters.front()].tensor.options().dtype(at::kFloat);
    if (options_.bf16_wire) {
      bucket.buffer = at::zeros({elements}, fp32);
      bucket.wire = at::empty({elements}, fp32.dtype(at::kBFloat16));
    } else {
      // Where the communicator sums fastest (mpi: node shared memory, summed in place).
      bucket.buffer = communicator_.new_buffer(elements, fp32);
      bucket.wire = bucket.buffer;
    }
  }
  for (size_t k = 0; k < n; ++k) {
    std::shared_ptr<torch::autograd::Node> accumulator =
        torch::autograd::impl::grad_accumulator(parameters_[k].tensor);
    CMAF_CHECK(accumulator != nullptr, "parameter ", parameters_[k].name, " is not a leaf that requires grad");
    const uintptr_t key = accumulator->add_post_hook(std::make_unique<AccumulatedHook>([this, k] { on_gradient_ready(k); }));
    hooks_.emplace_back(std::move(accumulator), key);
  }
  prepare_for_backward();
}

at::Tensor BucketedReducer::bucket_view(size_t parameter) const {
  // An alias of the bucket's storage that is not an autograd view: optimizers' zero_grad()
  // calls grad.detach_(), which LibTorch refuses on views. Same strides as the parameter when it
  // is dense (channels-last weights get channels-last gradients, as autograd would make them;
  // otherwise every backward would copy between layouts), else contiguous.
  const at::Tensor& p = parameters_[parameter].tensor;
  const at::Tensor& buffer = buckets_[bucket_of_[parameter]].buffer;
  at::NoGradGuard no_grad;
  const std::vector<int64_t> strides =
      p.is_non_overlapping_and_dense() ? p.strides().vec() : at::empty(p.sizes()).strides().vec();
  return at::empty({0}, buffer.options())
      .set_(buffer.storage(), buffer.storage_offset() + offset_of_[parameter], p.sizes(), strides);
}

BucketedReducer::~BucketedReducer() {
  for (auto& [accumulator, key] : hooks_) accumulator->del_post_hook(key);
  for (Bucket& bucket : buckets_) {
    if (bucket.work) {
      try {
        bucket.work->wait();  // never leave a collective reading a freed buffer
      } catch (...) {
      }
    }
  }
}

std::vector<std::vector<std::string>> BucketedReducer::bucket_layout() const {
  std::vector<std::vector<std::string>> layout;
  for (const Bucket& bucket : buckets_) {
    layout.emplace_back();
    for (size_t k : bucket.parameters) layout.back().push_back(parameters_[k].name);
  }
  return layout;
}

void BucketedReducer::prepare_for_micro_backward(bool first, bool last) {
  for (Bucket& bucket : buckets_) {
    CMAF_CHECK(!bucket.work || bucket.work->completed(), "prepare_for_backward before finish()");
    bucket.pending = static_cast<int64_t>(bucket.parameters.size());
    bucket.work.reset();
  }
  for (size_t k = 0; k < parameters_.size(); ++k) {
    at::Tensor& grad = parameters_[k].tensor.mutable_grad();
    if (first) {
      // No zeroing pass: autograd writes a fresh gradient and the hook moves it into the bucket.
      grad = at::Tensor();
      accumulated_[k] = false;
    } else if (accumulated_[k]) {
      CMAF_CHECK(grad.defined() && grad.data_ptr() == bucket_view(k).data_ptr(), "the gradient of ",
                 parameters_[k].name, " is not in its bucket between micro-batches (was .grad reset?)");
    } else {
      // No micro-batch has given it a gradient yet: the first that does moves it into the bucket.
      CMAF_CHECK(!grad.defined(), "the gradient of ", parameters_[k].name,
                 " was set between micro-batches, outside the reducer");
    }
  }
  std::fill(received_.begin(), received_.end(), false);
  next_launch_ = 0;
  local_only_ = !last;
}

void BucketedReducer::on_gradient_ready(size_t parameter) {
  CMAF_CHECK(!received_[parameter], "gradient of ", parameters_[parameter].name,
             " produced twice in one backward (call prepare_for_backward() before each backward)");
  at::Tensor& grad = parameters_[parameter].tensor.mutable_grad();
  CMAF_CHECK(grad.defined(), "no gradient after accumulation for ", parameters_[parameter].name);
  received_[parameter] = true;
  accumulated_[parameter] = true;
  // The share each rank contributes to the sum: g / world size (bf16: scaled while packing).
  const bool scale = !local_only_ && !options_.bf16_wire && communicator_.size() > 1;
  at::Tensor view = bucket_view(parameter);
  if (grad.data_ptr() != view.data_ptr()) {
    // The first backward since prepare: autograd made a fresh gradient. Move it into the bucket
    // (scaled in the same pass) and leave .grad pointing there, as DDP does for bucket views.
    at::NoGradGuard no_grad;
    if (scale) {
      at::mul_out(view, grad, at::scalar_tensor(share_scale(), grad.options()));
    } else {
      view.copy_(grad);
    }
    grad = view;
  } else if (scale) {
    grad.mul_(share_scale());  // accumulated in place over micro-batches: scale the sum once
  }
  if (local_only_) return;  // accumulating: the last micro-batch's backward communicates
  if (--buckets_[bucket_of_[parameter]].pending == 0) launch_ready_buckets();
}

void BucketedReducer::launch_ready_buckets() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    Bucket& bucket = buckets_[next_launch_++];
    if (options_.bf16_wire) {
      // Divide by the world size before rounding to bf16 (as DDP's bf16 compression hook), in
      // the same pass as the rounding.
      const float scale = share_scale();
      if (bucket.buffer.is_cpu()) {
        scaled_to_bf16(bucket.buffer.data_ptr<float>(), scale, reinterpret_cast<uint16_t*>(bucket.wire.data_ptr()),
                       bucket.buffer.numel());
      } else {
        bucket.wire.copy_(bucket.buffer.mul(scale));  // device buffers: ATen's kernels
      }
    }
    // The shares are already divided by the world size: a sum is the average.
    bucket.work = communicator_.all_reduce_async(bucket.wire, ReduceOp::kSum);
  }
}

void BucketedReducer::finish() {
  CMAF_CHECK(!local_only_, "finish() after a backward that was not the last micro-batch's "
             "(prepare_for_micro_backward(first, last = false) communicates nothing)");
  // Gradients the last backward did not produce: a parameter used only in earlier micro-batches
  // is ready now (its share scaled as the hook would have); one that no micro-batch used is
  // missing, and its part of the bucket is zeros. Either way every bucket is launched, so that
  // the collectives pair up on every rank whatever this rank's graph skipped.
  std::string missing;
  int64_t missing_count = 0;
  const bool scale = !options_.bf16_wire && communicator_.size() > 1;
  for (size_t k = 0; k < parameters_.size(); ++k) {
    if (received_[k]) continue;
    at::Tensor& grad = parameters_[k].tensor.mutable_grad();
    at::NoGradGuard no_grad;
    if (accumulated_[k]) {
      if (scale) grad.mul_(share_scale());
    } else {
      missing += (missing.empty() ? "" : ", ") + parameters_[k].name;
      ++missing_count;
      grad = bucket_view(k).zero_();
    }
    received_[k] = true;
    --buckets_[bucket_of_[k]].pending;
  }
  launch_ready_buckets();
  // Whether any rank missed a gradient, in the same pass over the node (a float sum: node
  // shared memory where the buckets go): every rank learns it and fails together, instead of the
  // others waiting for the stall limit.
  const int size = communicator_.size();
  at::Tensor missing_by_rank;
  WorkHandle agreement;
  if (size > 1 && !buckets_.empty()) {
    // On the buckets' device: the NCCL communicator takes only GPU tensors.
    missing_by_rank = at::zeros({size}, buckets_.front().buffer.options().dtype(at::kDouble));
    missing_by_rank[communicator_.rank()] = static_cast<double>(missing_count);
    agreement = communicator_.all_reduce_async(missing_by_rank, ReduceOp::kSum);
  }
  for (Bucket& bucket : buckets_) {
    bucket.work->wait();  // reduced in place: .grad (a view) now holds the average
    if (options_.bf16_wire) bucket.buffer.copy_(bucket.wire);
  }
  std::string ranks;
  if (agreement) {
    agreement->wait();
    const at::Tensor counts = missing_by_rank.to(at::kCPU);
    const double* count = counts.data_ptr<double>();
    for (int r = 0; r < size; ++r) {
      if (count[r] > 0) ranks += str(ranks.empty() ? "" : ", ", r);
    }
  } else if (missing_count > 0) {
    ranks = "0";
  }
  if (!ranks.empty()) {
    throw ClusterError(str("parameters that received no gradient in this step",
                           missing.empty() ? str(" on rank(s) ", ranks, " (named in their error)")
                                           : str(": ", missing, size > 1 ? str(" (rank(s) with some: ", ranks, ")") : ""),
                           ". Every parameter must contribute to the loss on every rank (a module "
                           "that forward does not call, or a branch skipped on this rank)"));
  }
}

}  // namespace cmaf::cluster
