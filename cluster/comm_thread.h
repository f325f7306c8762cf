// One ordered communication thread: tasks run one at a time in submission order. Every
// communicator issues its collectives through one, so all calls into MPI (or NCCL enqueueing)
// happen on a single thread (MPI_THREAD_SERIALIZED suffices) and asynchronous collectives can
// overlap the caller's computation while keeping the same order on every rank.
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
  CommThread();
  ~CommThread();  // runs the tasks already submitted, then joins
  CommThread(const CommThread&) = delete;
  CommThread& operator=(const CommThread&) = delete;

  // The returned future becomes ready when `task` has run (and carries its exception).
  std::shared_future<void> submit(std::function<void()> task);

 private:
  void loop();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::packaged_task<void()>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace cmaf::cluster
