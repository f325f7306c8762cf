#include "cluster/comm_thread.h"

#include <chrono>
#include <utility>

namespace cmaf::cluster {

CommThread::CommThread(std::function<bool()> idle) : idle_(std::move(idle)), thread_([this] { loop(); }) {}

CommThread::~CommThread() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

std::shared_future<void> CommThread::submit(std::function<void()> task) {
  std::packaged_task<void()> packaged(std::move(task));
  std::shared_future<void> done = packaged.get_future().share();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(packaged));
  }
  wake_.notify_one();
  return done;
}

void CommThread::loop() {
  bool polling = false;  // idle_ has work outstanding: call it again rather than sleep
  // A request outstanding for long (a peer minutes late) is polled in 100 us naps after the
  // first 2 ms, not by a thread spinning on a core the rank's compute threads need.
  std::chrono::steady_clock::time_point polling_since;
  bool napping = false;
  for (;;) {
    std::packaged_task<void()> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (!polling) wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (!queue_.empty()) {
        task = std::move(queue_.front());
        queue_.pop_front();
      } else if (stopping_ && !polling) {
        return;  // stopping and drained
      }
    }
    const bool ran = task.valid();
    if (ran) task();  // exceptions are stored in the task's future
    const bool was_polling = polling;
    if (idle_) polling = idle_();
    if (!polling || ran || !was_polling) {
      polling_since = std::chrono::steady_clock::now();
      napping = false;
    }
    if (polling && !ran) {
      if (!napping) napping = std::chrono::steady_clock::now() - polling_since > std::chrono::milliseconds(2);
      if (napping) {
        std::unique_lock<std::mutex> lock(mutex_);  // a new task ends the nap
        wake_.wait_for(lock, std::chrono::microseconds(100), [this] { return stopping_ || !queue_.empty(); });
      } else {
        std::this_thread::yield();
      }
    }
  }
}

}  // namespace cmaf::cluster
