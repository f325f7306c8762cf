// MpiCommunicator's float sums through node shared memory (mpi_communicator.h): the segments
// and barrier set up at construction, the buffers of new_buffer(), and the sum itself, on one
// node and hierarchically over several.
#include <glog/logging.h>

#include <algorithm>
#include <cstring>

#include "cluster/cluster_error.h"
#include "cluster/mpi_communicator.h"
#include "cluster/mpi_thread.h"
#include "common/error.h"

namespace cmaf::cluster {
namespace {

// Each rank's staging block for sums of tensors that are not in node shared memory.
constexpr int64_t kStagingBytes = int64_t{4} << 20;

// Each rank's control block: its NodeBarrier counter at 0, its sum descriptor on the next line,
// and at its end a word that a rank sets (to its world rank + 1) when its MPI call between
// nodes failed, for the node's other ranks to see after the sum's last barrier.
constexpr int64_t kDescriptorOffset = 64;
constexpr int64_t kFailureOffset = 120;
constexpr int64_t kControlBytes = 128;

std::string describe_sum(int64_t bytes, int32_t type, int64_t buffer, int64_t offset) {
  return str(bytes, " bytes of ", at::toString(static_cast<at::ScalarType>(type)),
             buffer < 0 ? str(" through the staging block (chunk at byte ", offset, ")")
                        : str(" in node shared buffer #", buffer, " at byte ", offset));
}

}  // namespace

void MpiCommunicator::setup_node_shared_memory(int smallest_node, int largest_node) {
  if (smallest_node != largest_node || largest_node == 1) {
    // A node's slice of the sum is split among its ranks, and the same slices cross between
    // nodes: that needs the same number of ranks on every node (and more than one).
    if (rank_ == 0) {
      LOG(INFO) << "float sums through MPI_Allreduce: " << nodes_ << " nodes with " << smallest_node << " to "
                << largest_node << " ranks each (node shared memory needs the same count, above 1, on every node)";
    }
    return;
  }
  if (nodes_ > 1) {
    // Rank i of every node sums slice i of the node sums with its counterparts on the other nodes.
    check(mpi_comm_split(comm_, node_rank_, rank_, cross_comm_.receive()), "MPI_Comm_split");
  }
  std::string why;
  std::shared_ptr<SharedSegment> control = SharedSegment::map(node_comm_, kControlBytes, &why, rank_);
  std::shared_ptr<SharedSegment> staging;
  if (control) staging = SharedSegment::map(node_comm_, kStagingBytes, &why, rank_);
  // Every node takes the same path: a node that cannot map sends all sums through MPI.
  if (!agreed_by_all_nodes(staging != nullptr, &why)) {
    LOG(WARNING) << "node shared memory unavailable, float sums go through MPI_Allreduce: " << why;
    check(cross_comm_.reset(), "MPI_Comm_free");
    return;
  }
  staging_ = std::move(staging);
  node_barrier_ = std::make_unique<NodeBarrier>(std::move(control), node_rank_, node_size_);
  if (rank_ == 0) {
    LOG(INFO) << "float sums through node shared memory (" << node_size_ << " ranks a node"
              << (nodes_ > 1 ? str(", then MPI_Allreduce between ", nodes_, " nodes") : std::string()) << ")";
  }
}

bool MpiCommunicator::agreed_by_all_nodes(bool ok, std::string* why) {
  if (nodes_ == 1) return ok;  // SharedSegment::map has agreed over the node already
  int everyone = 0;
  const int mine = ok ? 1 : 0;
  check(mpi_allreduce(&mine, &everyone, 1, MPI_INT, MPI_MIN, comm_), "MPI_Allreduce");
  if (ok && !everyone && why) *why = "a rank on another node could not map node shared memory (its log says why)";
  return everyone != 0;
}

void MpiCommunicator::sum_slots(const std::vector<char*>& slots, at::ScalarType type, int64_t elements,
                                const SumDescriptor& mine) {
  // The barriers order the memory: every rank's copy (and descriptor) is written before anyone
  // reads it, and every slice is summed before anyone uses (or overwrites) its copy again.
  const auto descriptor_of = [&](int node_rank) {
    return reinterpret_cast<SumDescriptor*>(node_barrier_->segment().block(node_rank) + kDescriptorOffset);
  };
  std::memcpy(descriptor_of(node_rank_), &mine, sizeof(mine));
  node_barrier_->arrive_and_wait();
  // Every rank compares every peer with itself, so a difference is found on all of them; all
  // still pass the second barrier (no one overwrites its descriptor before everyone has read).
  static_assert(kDescriptorOffset + sizeof(SumDescriptor) <= kFailureOffset, "the control block holds a descriptor");
  bool differ = false;
  for (int r = 0; r < node_size_ && !differ; ++r) {
    SumDescriptor peer;
    std::memcpy(&peer, descriptor_of(r), sizeof(peer));
    differ = peer.sequence != mine.sequence || peer.bytes != mine.bytes || peer.offset != mine.offset ||
             peer.buffer != mine.buffer || peer.type != mine.type;
  }
  std::string sides;
  if (differ) {
    for (int r = 0; r < node_size_; ++r) {
      SumDescriptor peer;
      std::memcpy(&peer, descriptor_of(r), sizeof(peer));
      sides += str(r == 0 ? "" : "; ", "rank ", peer.rank, ": collective #", peer.sequence, ", ",
                   describe_sum(peer.bytes, peer.type, peer.buffer, peer.offset));
    }
  }
  const bool several_nodes = cross_comm_ != MPI_COMM_NULL;
  // Several nodes: an MPI call between nodes that fails on this rank is kept here, flagged in the
  // control block and thrown after the last barrier, so that the node's other ranks (which have
  // summed their slices and wait there) learn it and fail too, instead of waiting for the stall
  // limit or returning a slice that was never summed between nodes.
  std::string failed;
  const auto between_nodes = [&](const auto& call) {
    if (!failed.empty()) return;
    try {
      call();
    } catch (const ClusterError& error) {
      failed = error.what();
    }
  };
  // Several nodes: whether the ranks of every node agree, and the nodes with each other (node
  // rank i with its counterparts; a node's ranks all agree or all refuse), so that every rank of
  // every node refuses together. A node that refused alone would leave the others waiting in the
  // sum between nodes, or paired with its next sum; nodes that each agree but sum different
  // tensors would cut them into different slices.
  bool refused_elsewhere = false;
  std::string elsewhere;
  if (several_nodes) {
    between_nodes([&] {
      const int64_t fields[] = {differ ? 1 : 0, mine.sequence, mine.bytes, mine.offset, mine.buffer, mine.type};
      constexpr int kFields = static_cast<int>(sizeof(fields) / sizeof(fields[0]));
      int64_t pairs[2 * kFields];  // (v, -v): MPI_MAX gives each field's largest and smallest value
      for (int f = 0; f < kFields; ++f) {
        pairs[2 * f] = fields[f];
        pairs[2 * f + 1] = -fields[f];
      }
      int64_t range[2 * kFields];
      check(mpi_allreduce(pairs, range, 2 * kFields, MPI_INT64_T, MPI_MAX, cross_comm_),
            "MPI_Allreduce (between nodes)");
      bool nodes_differ = false;
      for (int f = 1; f < kFields; ++f) nodes_differ = nodes_differ || range[2 * f] != -range[2 * f + 1];
      refused_elsewhere = !differ && (range[0] == 1 || nodes_differ);
      if (range[0] == 1) {
        elsewhere = "the ranks of another node passed different tensors (their errors name them)";
      } else if (nodes_differ) {
        elsewhere = str("the nodes passed different tensors (collectives #", -range[3], " to #", range[2], ", ",
                        -range[5], " to ", range[4], " bytes, dtypes ",
                        at::toString(static_cast<at::ScalarType>(-range[11])), " to ",
                        at::toString(static_cast<at::ScalarType>(range[10])), ")");
      }
    });
  }
  const int64_t element = static_cast<int64_t>(at::elementSize(type));
  const auto [begin, end] = owned_range(elements, element, node_rank_, node_size_);
  if (differ || refused_elsewhere || !failed.empty()) {
    // Nothing summed: every tensor stays as it was.
  } else if (!several_nodes) {
    sum_into_all(slots, type, begin, end);
  } else if (begin < end) {  // the same slice is empty on every node (owned_range of the same sizes)
    // This node's sum of the slice, then the sum over nodes of the node sums (every node's rank
    // of this node rank gets the same result), then to the node's other ranks.
    sum_into(slots, type, begin, end, node_rank_);
    char* own = slots[static_cast<size_t>(node_rank_)];
    for (int64_t offset = begin; offset < end; offset += kMaxChunk) {
      const int count = static_cast<int>(std::min(kMaxChunk, end - offset));
      between_nodes([&] {
        check(mpi_allreduce(MPI_IN_PLACE, own + offset * element, count, mpi_type(type), MPI_SUM, cross_comm_),
              "MPI_Allreduce (between nodes)");
      });
    }
    if (failed.empty()) copy_to_all(slots, element, begin, end, node_rank_);
  }
  if (!failed.empty()) failure_word(node_rank_)->store(rank_ + 1, std::memory_order_relaxed);  // the barrier orders it
  node_barrier_->arrive_and_wait();
  if (differ) {
    throw ClusterError(str("[rank ", rank_, " on ", host_, "] all_reduce through node shared memory: the ranks of ",
                           "this node passed different tensors (", sides, "). Every rank must all-reduce tensors ",
                           "of the same dtype and size, in the same order"));
  }
  if (!failed.empty()) throw ClusterError(failed);  // check() has marked the communicator failed
  if (several_nodes) {
    for (int r = 0; r < node_size_; ++r) {
      const int32_t failed_rank = failure_word(r)->load(std::memory_order_relaxed) - 1;
      if (failed_rank < 0) continue;
      const std::string what = str("[rank ", rank_, " on ", host_, "] all_reduce through node shared memory: rank ",
                                   failed_rank, " on this node failed in its MPI call between nodes (its error says ",
                                   "which and why); this node's sum is incomplete");
      if (failure_.empty()) failure_ = what;  // MPI's state between the nodes is undefined now
      throw ClusterError(what);
    }
  }
  if (refused_elsewhere) {
    throw ClusterError(str("[rank ", rank_, " on ", host_, "] all_reduce through node shared memory: ", elsewhere,
                           "; here every rank passed ",
                           describe_sum(mine.bytes, mine.type, mine.buffer, mine.offset), " (collective #",
                           mine.sequence, "). Every rank must all-reduce tensors of the same dtype and size, in the ",
                           "same order"));
  }
}

std::atomic<int32_t>* MpiCommunicator::failure_word(int node_rank) const {
  static_assert(std::atomic<int32_t>::is_always_lock_free && kFailureOffset + 4 <= kControlBytes);
  return reinterpret_cast<std::atomic<int32_t>*>(node_barrier_->segment().block(node_rank) + kFailureOffset);
}

void MpiCommunicator::shared_memory_sum(at::Tensor& tensor) {
  auto* data = static_cast<char*>(tensor.data_ptr());
  const int64_t element = static_cast<int64_t>(tensor.element_size());
  const int64_t bytes = tensor.numel() * element;
  if (bytes == 0) return;
  std::vector<char*> slots(static_cast<size_t>(node_size_));
  SumDescriptor descriptor;
  descriptor.bytes = bytes;
  descriptor.type = static_cast<int32_t>(tensor.scalar_type());
  descriptor.rank = rank_;
  if (const HeldBuffer held = segment_holding(data, bytes); held.segment) {
    // In node shared memory already (a bucket): summed where it lies, at the same offset in
    // every rank's block (the contract: the same collectives on the same buffers everywhere).
    const CollectiveScope scope = begin_collective("shared-memory sum", bytes);
    const int64_t offset = data - held.segment->mine();
    for (int r = 0; r < node_size_; ++r) slots[static_cast<size_t>(r)] = held.segment->block(r) + offset;
    descriptor.sequence = sequence_;
    descriptor.buffer = held.number;
    descriptor.offset = offset;
    sum_slots(slots, tensor.scalar_type(), tensor.numel(), descriptor);
    return;
  }
  for (int r = 0; r < node_size_; ++r) slots[static_cast<size_t>(r)] = staging_->block(r);
  const int64_t chunk = staging_->bytes() / element * element;
  for (int64_t offset = 0; offset < bytes; offset += chunk) {
    const int64_t count = std::min(chunk, bytes - offset);
    const CollectiveScope scope = begin_collective("shared-memory sum (staged)", count);
    std::memcpy(staging_->mine(), data + offset, static_cast<size_t>(count));
    descriptor.sequence = sequence_;
    descriptor.offset = offset;
    sum_slots(slots, tensor.scalar_type(), count / element, descriptor);
    std::memcpy(data + offset, staging_->mine(), static_cast<size_t>(count));
  }
}

at::Tensor MpiCommunicator::new_buffer(int64_t elements, const at::TensorOptions& options) {
  const at::ScalarType type = at::typeMetaToScalarType(options.dtype());
  if (!staging_ || elements == 0 || options.device().type() != at::kCPU || (type != at::kFloat && type != at::kDouble)) {
    return at::zeros({elements}, options);
  }
  const int64_t bytes = elements * static_cast<int64_t>(at::elementSize(type));
  std::shared_ptr<SharedSegment> segment;
  std::string why;
  thread_->submit([&] {
    const CollectiveScope scope = begin_collective("shared-memory buffer", bytes);
    try {
      segment = SharedSegment::map(node_comm_, bytes, &why, rank_);
    } catch (const ClusterError& error) {
      // A failed MPI call: as check() does, later collectives fail at once naming it.
      if (failure_.empty()) failure_ = error.what();
      throw;
    }
    if (!agreed_by_all_nodes(segment != nullptr, &why)) segment.reset();
    const int64_t number = buffers_made_++;  // counted whether or not it maps: the same everywhere
    if (segment) {
      buffers_.erase(std::remove_if(buffers_.begin(), buffers_.end(),
                                    [](const WeakBuffer& b) { return b.segment.expired(); }),
                     buffers_.end());
      buffers_.push_back(WeakBuffer{segment, number});
    }
  }).get();
  if (!segment) {
    LOG(WARNING) << "a " << bytes << "-byte buffer could not go to node shared memory (summed through the "
                 << "staging block instead): " << why;
    return at::zeros({elements}, options);
  }
  // The tensor owns the mapping: it unmaps when the last view of it goes (fresh pages are zero).
  char* block = segment->mine();
  return at::from_blob(block, {elements}, [segment](void*) {}, options);
}

bool MpiCommunicator::in_node_shared_memory(const at::Tensor& tensor) {
  const auto* data = static_cast<const char*>(tensor.data_ptr());
  const int64_t bytes = tensor.numel() * static_cast<int64_t>(tensor.element_size());
  bool found = false;
  thread_->submit([&] { found = segment_holding(data, bytes).segment != nullptr; }).get();
  return found;
}

MpiCommunicator::HeldBuffer MpiCommunicator::segment_holding(const char* data, int64_t bytes) const {
  for (const WeakBuffer& buffer : buffers_) {
    std::shared_ptr<SharedSegment> segment = buffer.segment.lock();
    if (segment && segment->holds(data, bytes)) return HeldBuffer{std::move(segment), buffer.number};
  }
  return HeldBuffer{};
}

}  // namespace cmaf::cluster
