#include "cluster/mpi_thread.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cluster/cluster_error.h"
#include "common/error.h"

namespace cmaf::cluster {
namespace {
std::atomic<int> level{-1};                  // MPI's thread level while MPI is up
std::atomic<MpiThread*> funnel{nullptr};     // set while MPI is up below MPI_THREAD_MULTIPLE

// The funnel, unless the caller is its thread (or nothing is funnelled): then MPI is called here.
MpiThread* funnel_elsewhere() {
  MpiThread* thread = funnel.load(std::memory_order_acquire);
  return thread != nullptr && !thread->is_current() ? thread : nullptr;
}
}  // namespace

int requested_mpi_thread_level() {
  const char* value = std::getenv("CMAF_MPI_THREAD_LEVEL");
  if (value == nullptr || *value == '\0' || std::strcmp(value, "multiple") == 0) return MPI_THREAD_MULTIPLE;
  if (std::strcmp(value, "serialized") == 0) return MPI_THREAD_SERIALIZED;
  if (std::strcmp(value, "funneled") == 0) return MPI_THREAD_FUNNELED;
  throw ClusterError(str("CMAF_MPI_THREAD_LEVEL=", value,
                         ": expected multiple, serialized or funneled (the thread level to ask MPI for)"));
}

std::string mpi_thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_MULTIPLE: return "multiple";
    case MPI_THREAD_SERIALIZED: return "serialized";
    case MPI_THREAD_FUNNELED: return "funneled";
    case MPI_THREAD_SINGLE: return "single";
    default: return str("unknown (", level, ")");
  }
}

MpiThread::MpiThread() : thread_([this] { return test_waits(); }) {}

MpiThread::~MpiThread() {
  MpiThread* self = this;
  funnel.compare_exchange_strong(self, nullptr);
}

void MpiThread::run(const std::function<void()>& block) { thread_.submit(block).get(); }

void MpiThread::started(int provided) {
  level.store(provided);
  if (provided < MPI_THREAD_MULTIPLE) funnel.store(this, std::memory_order_release);
}

void MpiThread::finished() {
  MpiThread* self = this;
  funnel.compare_exchange_strong(self, nullptr);
  level.store(-1);
  // A collective still waiting (a communicator that outlives the runtime, which the runtime's
  // contract forbids) fails rather than keep this thread testing a request past MPI_Finalize.
  for (Wait& wait : waits_) wait.done->set_value(MPI_ERR_OTHER);
  waits_.clear();
}

bool MpiThread::test_waits() {
  for (size_t k = 0; k < waits_.size();) {
    int done = 0;
    const int code = MPI_Test(waits_[k].request, &done, MPI_STATUS_IGNORE);
    if (code != MPI_SUCCESS || done) {
      waits_[k].done->set_value(code);
      waits_[k] = std::move(waits_.back());
      waits_.pop_back();
    } else {
      ++k;
    }
  }
  return !waits_.empty();
}

int mpi_thread_level() { return level.load(); }

bool mpi_funnelled() { return funnel.load(std::memory_order_acquire) != nullptr; }

void mpi_run(const std::function<void()>& block) {
  if (MpiThread* thread = funnel_elsewhere()) {
    thread->run(block);
  } else {
    block();
  }
}

int mpi_call(const std::function<int()>& call) {
  int code = MPI_SUCCESS;
  mpi_run([&] { code = call(); });
  return code;
}

int MpiThread::complete(MPI_Request* request, std::function<int(MPI_Request*)> start) {
  auto done = std::make_shared<std::promise<int>>();
  std::future<int> result = done->get_future();
  thread_.submit([this, request, start = std::move(start), done] {
    const int code = start(request);
    if (code != MPI_SUCCESS) {
      done->set_value(code);
      return;
    }
    waits_.push_back({request, done});  // tested right after this task, then between the others
  });
  return result.get();
}

int mpi_start_and_wait(const std::function<int(MPI_Request*)>& start) {
  MPI_Request request = MPI_REQUEST_NULL;
  if (MpiThread* thread = funnel_elsewhere()) return thread->complete(&request, start);
  const int code = start(&request);
  return code != MPI_SUCCESS ? code : MPI_Wait(&request, MPI_STATUS_IGNORE);
}

int mpi_allreduce(const void* send, void* receive, int count, MPI_Datatype type, MPI_Op op, MPI_Comm comm) {
  if (!mpi_funnelled()) return MPI_Allreduce(send, receive, count, type, op, comm);
  return mpi_start_and_wait(
      [&](MPI_Request* request) { return MPI_Iallreduce(send, receive, count, type, op, comm, request); });
}

int mpi_bcast(void* buffer, int count, MPI_Datatype type, int root, MPI_Comm comm) {
  if (!mpi_funnelled()) return MPI_Bcast(buffer, count, type, root, comm);
  return mpi_start_and_wait([&](MPI_Request* request) { return MPI_Ibcast(buffer, count, type, root, comm, request); });
}

int mpi_allgather(const void* send, int send_count, MPI_Datatype send_type, void* receive, int receive_count,
                  MPI_Datatype receive_type, MPI_Comm comm) {
  if (!mpi_funnelled()) return MPI_Allgather(send, send_count, send_type, receive, receive_count, receive_type, comm);
  return mpi_start_and_wait([&](MPI_Request* request) {
    return MPI_Iallgather(send, send_count, send_type, receive, receive_count, receive_type, comm, request);
  });
}

int mpi_barrier(MPI_Comm comm) {
  if (!mpi_funnelled()) return MPI_Barrier(comm);
  return mpi_start_and_wait([&](MPI_Request* request) { return MPI_Ibarrier(comm, request); });
}

int mpi_comm_dup(MPI_Comm comm, MPI_Comm* out) {
  if (!mpi_funnelled()) return MPI_Comm_dup(comm, out);
  return mpi_start_and_wait([&](MPI_Request* request) { return MPI_Comm_idup(comm, out, request); });
}

int mpi_comm_split(MPI_Comm comm, int color, int key, MPI_Comm* out) {
  if (!mpi_funnelled()) return MPI_Comm_split(comm, color, key, out);
  const int code = mpi_barrier(comm);
  return code != MPI_SUCCESS ? code : mpi_call([&] { return MPI_Comm_split(comm, color, key, out); });
}

int mpi_comm_split_type(MPI_Comm comm, int type, int key, MPI_Info info, MPI_Comm* out) {
  if (!mpi_funnelled()) return MPI_Comm_split_type(comm, type, key, info, out);
  const int code = mpi_barrier(comm);
  return code != MPI_SUCCESS ? code : mpi_call([&] { return MPI_Comm_split_type(comm, type, key, info, out); });
}

void exit_after(std::chrono::milliseconds delay, int status) noexcept {
  try {
    std::thread([delay, status] {
      std::this_thread::sleep_for(delay);
      _exit(status);
    }).detach();
  } catch (...) {  // no thread to be had: the caller goes on and ends the job as best it can
  }
}

void mpi_abort(int status) {
  exit_after(kAbortDeadline, status);
  std::fflush(nullptr);
  if (level.load() >= 0) {
    if (MpiThread* thread = funnel_elsewhere()) {
      // Not run() (no wait past 2 s): the thread may be held in a blocking call.
      thread->thread_.submit([status] { MPI_Abort(MPI_COMM_WORLD, status); }).wait_for(std::chrono::seconds(2));
    } else {
      MPI_Abort(MPI_COMM_WORLD, status);
    }
  }
  _exit(status);
}

}  // namespace cmaf::cluster
