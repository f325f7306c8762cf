#include "cluster/phase_watchdog.h"

#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "cluster/mpi_thread.h"
#include "common/error.h"

namespace cmaf::cluster {
namespace {
std::atomic<int> failed_status{0};
std::atomic<int> first_ending_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "note_ending_signal runs in a signal handler");

double seconds(std::chrono::milliseconds t) { return std::chrono::duration<double>(t).count(); }

[[noreturn]] void end_stall(const std::string& message, int status, WatchdogEnd end) {
  exit_after(kAbortDeadline, status);  // the log below may block (a hung file system)
  LOG(ERROR) << message;
  google::FlushLogFiles(google::GLOG_INFO);
  std::fflush(nullptr);  // what the process printed so far (std::cout writes through stdio)
  // MPI_Abort from this thread, or through the MPI thread where calls are funnelled (which may be
  // held in the stuck call: then, after 2 s, this process alone exits).
  if (end == WatchdogEnd::kAbortJob) mpi_abort(status);
  _exit(status);
}
}  // namespace

void note_ending_signal(int signal) {
  int none = 0;
  first_ending_signal.compare_exchange_strong(none, signal);
}
int ending_signal() { return first_ending_signal.load(); }
void clear_ending_signal() { first_ending_signal.store(0); }

void PhaseWatchdog::rank_failed(int status) { failed_status.store(status == 0 ? 1 : status); }

PhaseWatchdog::PhaseWatchdog(std::string phase, std::chrono::milliseconds limit, std::string who,
                             WatchdogEnd end)
    : phase_(std::move(phase)),
      who_(std::move(who)),
      end_(end),
      failed_status_(failed_status.load()),
      limit_(failed_status_ != 0 ? std::min<std::chrono::milliseconds>(limit, kFailedRankGrace) : limit),
      thread_([this] { watch(); }) {}

PhaseWatchdog::~PhaseWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
  }
  over_.notify_all();
  thread_.join();
}

std::string PhaseWatchdog::message() const {
  if (failed_status_ != 0) {
    return str("[", who_, "] this rank has failed (its error is above), and the other ranks have not ",
               "joined it in ", phase_, " within ", seconds(limit_), " s (still in ", call_.load(),
               "): they are waiting for it elsewhere. Ending the job with exit status ", failed_status_);
  }
  return str("[", who_, "] ", phase_, " has not finished after ", seconds(limit_),
             " s, the stall limit (still in ", call_.load(), "): a process of the job has not arrived ",
             "there. It may not have started, be stuck or stopped before this point, or its node may ",
             "hang; its own log says how far it got. Exiting with status ", kStallExitCode,
             " instead of waiting forever");
}

void PhaseWatchdog::watch() {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (over_.wait_for(lock, limit_, [this] { return done_; })) return;
  }
  end_stall(message(), failed_status_ != 0 ? failed_status_ : kStallExitCode, end_);
}

CallWatchdog::CallWatchdog(std::chrono::milliseconds limit, std::string who, WatchdogEnd end)
    : limit_(limit), who_(std::move(who)), end_(end), thread_([this] { watch(); }) {}

CallWatchdog::~CallWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  stop_.notify_all();
  thread_.join();
}

void CallWatchdog::arm(const char* call) {
  std::lock_guard<std::mutex> lock(mutex_);
  call_ = call;
  deadline_ = std::chrono::steady_clock::now() + limit_;
}

void CallWatchdog::disarm() {
  std::lock_guard<std::mutex> lock(mutex_);
  call_ = nullptr;
}

void CallWatchdog::watch() {
  // Arming and disarming only write two fields (they come several times a step); the watcher
  // looks every quarter of the limit (at most every second), so a stall ends within 1.25 limits.
  const auto period = std::min<std::chrono::milliseconds>(limit_ / 4 + std::chrono::milliseconds(1),
                                                          std::chrono::seconds(1));
  std::unique_lock<std::mutex> lock(mutex_);
  auto before = std::chrono::steady_clock::now();
  while (!stop_.wait_for(lock, period, [this] { return stopping_; })) {
    // A wait that overran by seconds: the process was stopped (a suspended job); that time is
    // not counted against the armed call (its peers were most likely stopped too).
    const auto now = std::chrono::steady_clock::now();
    const auto overslept = now - before - period;
    before = now;
    if (overslept > std::chrono::seconds(1)) deadline_ += overslept;
    if (call_ == nullptr || now <= deadline_) continue;
    const std::string message =
        str("[", who_, "] stall: ", call_, " has not completed after ", seconds(limit_),
            " s, the stall limit: a rank has not joined it (dead, hung, or on another code path; an MPI "
            "stall report from the other ranks, if any, names it). Ending the job with status ",
            kStallExitCode, " instead of waiting forever");
    lock.unlock();
    end_stall(message, kStallExitCode, end_);
  }
}

}  // namespace cmaf::cluster
