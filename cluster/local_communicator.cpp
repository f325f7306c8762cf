#include "cluster/local_communicator.h"

#include <condition_variable>
#include <mutex>
#include <vector>

#include "common/error.h"

namespace cmaf::cluster {

enum class Collective { kAllReduce, kBroadcast, kAllGather, kBarrier };

// Rendezvous of the ranks of one collective: the last to arrive computes the result, everyone
// copies it out, the last to leave opens the next round.
class LocalGroup {
 public:
  explicit LocalGroup(int size)
      : size_(size), inputs_(static_cast<size_t>(size)), ops_(static_cast<size_t>(size)), roots_(static_cast<size_t>(size)) {}
  int size() const { return size_; }

  at::Tensor run(int rank, Collective kind, const at::Tensor& input, ReduceOp op, int root) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return !draining_; });
    inputs_[static_cast<size_t>(rank)] = input;
    ops_[static_cast<size_t>(rank)] = op;
    roots_[static_cast<size_t>(rank)] = root;
    kinds_.push_back(kind);
    const uint64_t round = round_;
    if (++arrived_ == size_) {
      try {
        result_ = compute(kind, op, root);
        error_.clear();
      } catch (const std::exception& e) {
        error_ = e.what();
      }
      draining_ = true;
      leaving_ = size_;
      ++round_;
      changed_.notify_all();
    } else {
      changed_.wait(lock, [&] { return round_ != round; });
    }
    const at::Tensor result = result_;
    const std::string error = error_;
    if (--leaving_ == 0) {
      draining_ = false;
      arrived_ = 0;
      kinds_.clear();
      for (auto& t : inputs_) t = at::Tensor();
      changed_.notify_all();
    }
    if (!error.empty()) throw InternalError(str("[rank ", rank, "] local collective: ", error));
    return result;
  }

 private:
  at::Tensor compute(Collective kind, ReduceOp op, int root) {
    for (Collective k : kinds_) {
      if (k != kind) throw std::runtime_error("ranks issued different collectives in the same round");
    }
    for (size_t r = 0; r < inputs_.size(); ++r) {
      if (kind == Collective::kAllReduce && ops_[r] != ops_[0]) {
        throw std::runtime_error(str("ranks passed different reductions: ", to_string(ops_[0]), " on rank 0, ",
                                     to_string(ops_[r]), " on rank ", r));
      }
      if (kind == Collective::kBroadcast && roots_[r] != roots_[0]) {
        throw std::runtime_error(str("ranks passed different broadcast roots: ", roots_[0], " on rank 0, ", roots_[r],
                                     " on rank ", r));
      }
    }
    for (const at::Tensor& t : inputs_) {
      if (kind != Collective::kBarrier && (t.sizes() != inputs_[0].sizes() || t.scalar_type() != inputs_[0].scalar_type())) {
        throw std::runtime_error("ranks passed tensors of different shapes or types");
      }
    }
    switch (kind) {
      case Collective::kBarrier: return at::Tensor();
      case Collective::kBroadcast: return inputs_.at(static_cast<size_t>(root)).clone();
      case Collective::kAllGather: return at::stack(inputs_);
      case Collective::kAllReduce: break;
    }
    const bool widen = inputs_[0].scalar_type() == at::kBFloat16;
    at::Tensor acc = widen ? inputs_[0].to(at::kFloat) : inputs_[0].clone();
    for (size_t r = 1; r < inputs_.size(); ++r) {
      const at::Tensor next = widen ? inputs_[r].to(at::kFloat) : inputs_[r];
      if (op == ReduceOp::kMax) {
        acc = at::maximum(acc, next);
      } else {
        acc.add_(next);
      }
    }
    if (op == ReduceOp::kAvg) acc.div_(size_);
    return acc;
  }

  const int size_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<at::Tensor> inputs_;
  std::vector<ReduceOp> ops_;  // per rank, this round
  std::vector<int> roots_;
  std::vector<Collective> kinds_;
  at::Tensor result_;
  std::string error_;
  int arrived_ = 0;
  int leaving_ = 0;
  bool draining_ = false;
  uint64_t round_ = 0;
};

LocalCommunicator::LocalCommunicator() : LocalCommunicator(std::make_shared<LocalGroup>(1), 0) {}

LocalCommunicator::LocalCommunicator(std::shared_ptr<LocalGroup> group, int rank)
    : group_(std::move(group)), rank_(rank), thread_(std::make_unique<CommThread>()) {}

int LocalCommunicator::size() const { return group_->size(); }

WorkHandle LocalCommunicator::all_reduce_async(at::Tensor tensor, ReduceOp op) {
  check_collective_tensor(*this, tensor, "all_reduce", op);
  return std::make_shared<Work>(thread_->submit([this, tensor, op]() mutable {
    const at::Tensor result = group_->run(rank_, Collective::kAllReduce, tensor, op, 0);
    tensor.copy_(result);
  }));
}

WorkHandle LocalCommunicator::broadcast_async(at::Tensor tensor, int root) {
  check_collective_tensor(*this, tensor, "broadcast");
  CMAF_CHECK(root >= 0 && root < size(), "broadcast root ", root, " of ", size(), " ranks");
  return std::make_shared<Work>(thread_->submit([this, tensor, root]() mutable {
    tensor.copy_(group_->run(rank_, Collective::kBroadcast, tensor, ReduceOp::kSum, root));
  }));
}

WorkHandle LocalCommunicator::all_gather_async(at::Tensor tensor, at::Tensor output) {
  check_collective_tensor(*this, tensor, "all_gather");
  check_gather_output(*this, tensor, output);
  return std::make_shared<Work>(thread_->submit([this, tensor, output]() mutable {
    output.copy_(group_->run(rank_, Collective::kAllGather, tensor, ReduceOp::kSum, 0));
  }));
}

WorkHandle LocalCommunicator::barrier_async() {
  return std::make_shared<Work>(thread_->submit([this] {
    group_->run(rank_, Collective::kBarrier, at::Tensor(), ReduceOp::kSum, 0);
  }));
}

std::vector<std::unique_ptr<Communicator>> make_local_group(int size) {
  CMAF_CHECK_GE(size, 1, "local group size");
  auto group = std::make_shared<LocalGroup>(size);
  std::vector<std::unique_ptr<Communicator>> communicators;
  for (int r = 0; r < size; ++r) communicators.push_back(std::make_unique<LocalCommunicator>(group, r));
  return communicators;
}

}  // namespace cmaf::cluster
