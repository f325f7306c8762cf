// Stall detection for the MPI backend: a side channel that tells who has not arrived.
//
// Each rank runs a heartbeat thread on its own duplicate communicator (needs
// MPI_THREAD_MULTIPLE) that sends, every `period`, the number of the last collective it entered
// to every other rank and records what it hears. A collective that has waited longer than the
// stall limit asks the monitor which ranks are missing: alive but behind (they never reached
// this collective: a hang elsewhere, or a rank that took another code path), or silent (no
// heartbeat for several periods: dead, or stuck with MPI unprogressed). The communicator logs
// that on every live rank and aborts the job, so a stall ends in a non-zero exit with a
// diagnosis instead of a hang.
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace cmaf::cluster {

inline constexpr std::chrono::seconds kDefaultStallLimit{300};
inline constexpr std::chrono::milliseconds kDefaultHeartbeatPeriod{500};

class HeartbeatMonitor {
 public:
  HeartbeatMonitor(MPI_Comm parent, std::chrono::milliseconds period);
  ~HeartbeatMonitor();
  HeartbeatMonitor(const HeartbeatMonitor&) = delete;
  HeartbeatMonitor& operator=(const HeartbeatMonitor&) = delete;

  // Called by the communication thread when it starts collective number `sequence`.
  void entered(int64_t sequence) { entered_.store(sequence); }

  // Which ranks have not reached collective `sequence`, and why (one line per rank).
  std::string missing_ranks(int64_t sequence) const;

 private:
  using Clock = std::chrono::steady_clock;
  void loop();
  void exchange();

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::chrono::milliseconds period_;
  std::atomic<int64_t> entered_{0};
  std::atomic<bool> stopping_{false};
  mutable std::mutex mutex_;
  std::vector<int64_t> last_sequence_;
  std::vector<Clock::time_point> last_heard_;
  struct PendingSend {
    MPI_Request request;
    std::unique_ptr<int64_t> value;  // the send buffer lives until the send completes
  };
  std::vector<PendingSend> pending_;
  std::thread thread_;
};

}  // namespace cmaf::cluster
