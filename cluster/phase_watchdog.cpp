#include "cluster/phase_watchdog.h"

#include <glog/logging.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>

#include "common/error.h"

namespace cmaf::cluster {
namespace {
std::atomic<int> failed_status{0};

double seconds(std::chrono::milliseconds t) { return std::chrono::duration<double>(t).count(); }
}  // namespace

void PhaseWatchdog::rank_failed(int status) { failed_status.store(status == 0 ? 1 : status); }

PhaseWatchdog::PhaseWatchdog(std::string phase, std::chrono::milliseconds limit, std::string who, End end)
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
  LOG(ERROR) << message();
  google::FlushLogFiles(google::GLOG_INFO);
  const int status = failed_status_ != 0 ? failed_status_ : kStallExitCode;
  if (end_ == End::kAbortJob) MPI_Abort(MPI_COMM_WORLD, status);
  _exit(status);
}

}  // namespace cmaf::cluster
