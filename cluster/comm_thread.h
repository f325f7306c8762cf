// One ordered communication thread: tasks run one at a time in submission order. Every
// communicator issues its collectives through one, so that its calls into MPI (or NCCL
// enqueueing) happen in the same order on every rank and asynchronous collectives can overlap
// the caller's computation. The MPI thread (mpi_thread.h) is one too, with an idle hook that
// tests outstanding requests.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

namespace cmaf::cluster {

class CommThread {
 public:
  // `idle`, when given, runs on the thread after each task; while it returns true (work
  // outstanding, such as MPI requests to test) the thread keeps calling it, between any tasks
  // that arrive, instead of sleeping.
  explicit CommThread(std::function<bool()> idle = nullptr);
  ~CommThread();  // runs the tasks already submitted (and idle until it returns false), then joins
  CommThread(const CommThread&) = delete;
  CommThread& operator=(const CommThread&) = delete;

  // The returned future becomes ready when `task` has run (and carries its exception).
  std::shared_future<void> submit(std::function<void()> task);
  // Whether the caller is this object's thread.
  bool is_current() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void loop();

  std::function<bool()> idle_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::packaged_task<void()>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace cmaf::cluster
