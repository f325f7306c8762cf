#include "cluster/node_shared_memory.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "cluster/cluster_error.h"
#include "cluster/mpi_communicator.h"
#include "cluster/mpi_thread.h"
#include "cluster/process_runtime.h"
#include "common/error.h"

namespace cmaf::cluster {
namespace {

constexpr int kNameBytes = 64;
constexpr int64_t kLineBytes = 64;

void check_mpi(int code, const char* call, int rank) {
  if (code == MPI_SUCCESS) return;
  throw ClusterError(str("[rank ", rank, " on ", host_name(), "] ", call, " failed: ", mpi_error_text(code)));
}

std::string errno_text(int code) { return std::strerror(code); }

// Creates and maps this rank's block; returns an error text, empty on success. `exists`: the
// name was taken (another job's, or a stale block of a job that died while setting up).
std::string create_block(const char* name, int64_t bytes, char** block, bool* exists) {
  const int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
  *exists = fd < 0 && errno == EEXIST;
  if (fd < 0) return str("shm_open(", name, ") failed: ", errno_text(errno));
  // Reserve the pages now: a tmpfs that is too small fails here, not with SIGBUS on first touch.
  const int reserved = posix_fallocate(fd, 0, static_cast<off_t>(bytes));
  if (reserved != 0) {
    close(fd);
    shm_unlink(name);
    return str("posix_fallocate of ", bytes, " bytes in /dev/shm failed: ", errno_text(reserved),
               " (a tmpfs too small for the gradient buckets? docker: --shm-size)");
  }
  void* address = mmap(nullptr, static_cast<size_t>(bytes), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (address == MAP_FAILED) {
    shm_unlink(name);
    return str("mmap of ", bytes, " bytes of ", name, " failed: ", errno_text(errno));
  }
  *block = static_cast<char*>(address);
  return "";
}

std::string map_peer_block(const char* name, int64_t bytes, char** block) {
  const int fd = shm_open(name, O_RDWR, 0600);
  if (fd < 0) return str("shm_open(", name, ") of a peer's block failed: ", errno_text(errno));
  void* address = mmap(nullptr, static_cast<size_t>(bytes), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (address == MAP_FAILED) return str("mmap of a peer's block ", name, " failed: ", errno_text(errno));
  *block = static_cast<char*>(address);
  return "";
}

// The sum goes into every slot (dest < 0) or into slots[dest] only.
template <typename T>
void sum_block(const std::vector<char*>& slots, int64_t begin, int64_t end, int dest) {
  constexpr int64_t kBlock = 2048;  // elements summed in a stack buffer that stays in L1
  T sum[kBlock];
  const size_t n = slots.size();
  for (int64_t start = begin; start < end; start += kBlock) {
    const int64_t count = std::min(kBlock, end - start);
    const T* first = reinterpret_cast<const T*>(slots[0]) + start;
    for (int64_t i = 0; i < count; ++i) sum[i] = first[i];
    for (size_t r = 1; r < n; ++r) {
      const T* next = reinterpret_cast<const T*>(slots[r]) + start;
      for (int64_t i = 0; i < count; ++i) sum[i] += next[i];
    }
    for (size_t r = 0; r < n; ++r) {
      if (dest >= 0 && r != static_cast<size_t>(dest)) continue;
      std::memcpy(reinterpret_cast<T*>(slots[r]) + start, sum, static_cast<size_t>(count) * sizeof(T));
    }
  }
}

std::atomic<uint32_t>* counter_of(const SharedSegment& segment, int rank) {
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && std::atomic<uint32_t>::is_always_lock_free);
  return reinterpret_cast<std::atomic<uint32_t>*>(segment.block(rank));
}

// Not FUTEX_PRIVATE: the word is in memory shared between processes.
void futex_wait(std::atomic<uint32_t>* word, uint32_t seen) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, seen, nullptr, nullptr, 0);
}
void futex_wake_all(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

bool reached(uint32_t value, uint32_t generation) {  // wrap-around safe
  return static_cast<int32_t>(value - generation) >= 0;
}


std::atomic<int> injected_map_failures{0};

uint64_t random_word() {  // communicators may be set up on several threads at once
  static std::mutex mutex;
  static std::mt19937_64 engine{std::random_device{}()};
  const std::lock_guard<std::mutex> lock(mutex);
  return engine();
}

}  // namespace

void fail_shared_memory_maps_for_testing(int count) { injected_map_failures = count; }

std::shared_ptr<SharedSegment> SharedSegment::map(MPI_Comm comm, int64_t bytes, std::string* why, int world_rank) {
  int rank = 0;
  int size = 1;
  const int rank_code = mpi_call([&] { return MPI_Comm_rank(comm, &rank); });
  const int named = world_rank >= 0 ? world_rank : rank;  // the rank errors name
  check_mpi(rank_code, "MPI_Comm_rank", named);
  check_mpi(mpi_call([&] { return MPI_Comm_size(comm, &size); }), "MPI_Comm_size", named);
  std::shared_ptr<SharedSegment> segment(new SharedSegment());
  segment->rank_ = rank;
  segment->bytes_ = bytes;
  // Whole pages, at least one: mmap of 0 bytes fails.
  const int64_t page = std::max<int64_t>(1, sysconf(_SC_PAGESIZE));
  segment->mapped_bytes_ = std::max<int64_t>(page, (bytes + page - 1) / page * page);
  segment->blocks_.assign(static_cast<size_t>(size), nullptr);

  // Every rank is here before any creates a block: a rank that died before this call (or
  // never comes) leaves nothing behind in /dev/shm; the names are unlinked a few calls below.
  check_mpi(mpi_barrier(comm), "MPI_Barrier", named);
  // Unique beyond this process: ranks in other PID namespaces (containers) can share /dev/shm.
  static std::atomic<int64_t> counter{0};
  std::array<char, kNameBytes> name{};
  std::string error;
  if (injected_map_failures > 0) {
    --injected_map_failures;
    error = "mapping refused on purpose (fail_shared_memory_maps_for_testing)";
  } else {
    bool exists = true;
    for (int attempt = 0; attempt < 4 && exists; ++attempt) {
      std::snprintf(name.data(), name.size(), "/cmaf-%ld-%lld-%016llx", static_cast<long>(getpid()),
                    static_cast<long long>(counter++), static_cast<unsigned long long>(random_word()));
      error = create_block(name.data(), segment->mapped_bytes_, &segment->blocks_[static_cast<size_t>(rank)], &exists);
    }
  }
  std::vector<char> names(static_cast<size_t>(size) * kNameBytes, 0);
  check_mpi(mpi_allgather(name.data(), kNameBytes, MPI_CHAR, names.data(), kNameBytes, MPI_CHAR, comm),
            "MPI_Allgather", named);
  int created = error.empty() ? 1 : 0;
  int all_created = 0;
  check_mpi(mpi_allreduce(&created, &all_created, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce", named);
  if (all_created) {
    for (int r = 0; r < size && error.empty(); ++r) {
      if (r == rank) continue;
      error = map_peer_block(&names[static_cast<size_t>(r) * kNameBytes], segment->mapped_bytes_,
                             &segment->blocks_[static_cast<size_t>(r)]);
    }
  }
  int mapped = error.empty() ? 1 : 0;
  int all_mapped = 0;
  check_mpi(mpi_allreduce(&mapped, &all_mapped, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce", named);
  // Every rank has opened every name (or given up): the names can go, the mappings stay.
  if (created) shm_unlink(name.data());
  if (all_mapped) return segment;
  if (why) {
    *why = error.empty() ? "another rank could not map node shared memory (its log says why)"
                         : str("[rank ", named, " on ", host_name(), "] ", error);
  }
  return nullptr;  // the destructor unmaps what was mapped
}

SharedSegment::~SharedSegment() {
  for (char* block : blocks_) {
    if (block) munmap(block, static_cast<size_t>(mapped_bytes_));
  }
}

bool SharedSegment::holds(const void* data, int64_t bytes) const {
  const char* begin = static_cast<const char*>(data);
  return begin >= mine() && bytes >= 0 && begin + bytes <= mine() + bytes_;
}

NodeBarrier::NodeBarrier(std::shared_ptr<SharedSegment> segment, int rank, int size)
    : segment_(std::move(segment)), rank_(rank), size_(size) {
  CMAF_CHECK(segment_ && segment_->bytes() >= static_cast<int64_t>(sizeof(uint32_t)), "node barrier segment");
}

void NodeBarrier::arrive_and_wait() {
  ++generation_;
  std::atomic<uint32_t>* mine = counter_of(*segment_, rank_);
  mine->store(generation_, std::memory_order_release);
  futex_wake_all(mine);
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    std::atomic<uint32_t>* peer = counter_of(*segment_, r);
    // About 10 us of spinning covers a peer that arrives at the same moment; then sleep.
    for (int spin = 0; spin < 256 && !reached(peer->load(std::memory_order_acquire), generation_); ++spin) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#else
      std::this_thread::yield();
#endif
    }
    for (;;) {
      const uint32_t seen = peer->load(std::memory_order_acquire);
      if (reached(seen, generation_)) break;
      futex_wait(peer, seen);  // returns at once if the word has changed since `seen`
    }
  }
}

std::pair<int64_t, int64_t> owned_range(int64_t elements, int64_t element_bytes, int rank, int size) {
  const int64_t line = std::max<int64_t>(1, kLineBytes / element_bytes);
  int64_t share = (elements + size - 1) / size;
  share = (share + line - 1) / line * line;
  const int64_t begin = std::min(elements, share * rank);
  return {begin, std::min(elements, begin + share)};
}

void sum_into(const std::vector<char*>& slots, at::ScalarType type, int64_t begin, int64_t end, int dest) {
  CMAF_CHECK(dest >= -1 && dest < static_cast<int>(slots.size()), "sum into slot ", dest, " of ", slots.size());
  if (type == at::kFloat) {
    sum_block<float>(slots, begin, end, dest);
  } else {
    CMAF_CHECK(type == at::kDouble, "node shared-memory sum of ", at::toString(type));
    sum_block<double>(slots, begin, end, dest);
  }
}

void sum_into_all(const std::vector<char*>& slots, at::ScalarType type, int64_t begin, int64_t end) {
  sum_into(slots, type, begin, end, -1);
}

void copy_to_all(const std::vector<char*>& slots, int64_t element_bytes, int64_t begin, int64_t end, int from) {
  CMAF_CHECK(from >= 0 && from < static_cast<int>(slots.size()), "copy from slot ", from, " of ", slots.size());
  const char* source = slots[static_cast<size_t>(from)] + begin * element_bytes;
  for (size_t r = 0; r < slots.size(); ++r) {
    if (r == static_cast<size_t>(from)) continue;
    std::memcpy(slots[r] + begin * element_bytes, source, static_cast<size_t>((end - begin) * element_bytes));
  }
}

}  // namespace cmaf::cluster
