// A time limit on the MPI calls that no stall watchdog watches: MPI start-up (MPI_Init_thread,
// the node communicator), a communicator's set-up and shut-down, and MPI_Finalize.
//
// The heartbeat monitor (heartbeat_monitor.h) watches collectives once a communicator exists.
// Before that, and after it is gone, a rank whose peer never arrives (a node that hangs while
// the job starts, a process stuck before MPI_Init, a rank that never reaches MPI_Finalize) would
// wait inside MPI forever: MPI_Init, MPI_Comm_dup, the communicator's last barrier and
// MPI_Finalize all wait for every process. A PhaseWatchdog covers such a phase: its thread
// sleeps until the object is destroyed (the phase is over) or the limit has passed. Past the
// limit it logs which phase and which call have not finished, on which rank and host, and ends
// with kStallExitCode: the whole job through MPI_Abort where MPI may be called (kAbortJob), else
// this process through _exit (before MPI_Init has returned, or inside MPI_Finalize), and the
// launcher ends the rest (mpirun at once; srun once each waiting rank's own watchdog has fired).
//
// A rank that has failed (its error printed, rank_failed()) tears down while its peers may still
// be waiting for it in a collective; the phases after that wait at most kFailedRankGrace (the
// peers may be failing the same way, and then all shut down cleanly), then end the job with the
// rank's own exit status instead.
//
// CallWatchdog is the same limit for a sequence of calls on one thread, armed around each: the
// NCCL communicator's collectives where its bootstrap is not MPI (with an MPI one, a heartbeat
// channel names the missing ranks too), whose host thread waits for the GPU stream, and a stream
// waits forever for a peer that never joins (NCCL has no timeout of its own).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace cmaf::cluster {

// The time a collective or a watched phase may wait for the other ranks, and the exit status of
// a process that gives up waiting (the heartbeat monitor's and the phase watchdog's).
inline constexpr std::chrono::seconds kDefaultStallLimit{300};
inline constexpr int kStallExitCode = 75;
inline constexpr std::chrono::seconds kFailedRankGrace{10};

// A signal that ends this process soon has arrived: SIGTERM (scancel, a time limit, srun's
// --kill-on-bad-exit after another task failed; Slurm sends SIGKILL KillWait seconds later). Set
// from the signal handler (async-signal-safe: a lock-free atomic). From then on a collective does
// not wait out the stall limit while a rank is silent (no heartbeat: dead, or its node hung;
// heartbeat_monitor.h): the checkpoint the signal asks for cannot be agreed with that rank, and
// the launcher ends the job soon anyway. Not for SIGUSR1, which leaves time (a preemption
// warning 120 s ahead, or none at all when sent by hand).
void note_ending_signal(int signal);
int ending_signal();  // the first such signal, 0 if none
void clear_ending_signal();  // for tests

// How a watchdog ends a stall: this process (_exit), or the whole job (mpi_abort(): MPI_Abort, made
// through the MPI thread where calls are funnelled; MPI must be initialised and not finalising).
enum class WatchdogEnd { kExitProcess, kAbortJob };

class PhaseWatchdog {
 public:
  // `phase` and `who` are for the message ("MPI start-up", "rank 3 on node17").
  PhaseWatchdog(std::string phase, std::chrono::milliseconds limit, std::string who, WatchdogEnd end);
  ~PhaseWatchdog();  // the phase is over: the watchdog stops without acting
  PhaseWatchdog(const PhaseWatchdog&) = delete;
  PhaseWatchdog& operator=(const PhaseWatchdog&) = delete;

  // The call now in progress (a string literal), named in the message.
  void at(const char* call) { call_.store(call); }

  // This process has failed and printed why; `status` (non-zero) is its exit status. Watchdogs
  // made from now on wait at most kFailedRankGrace and end with `status`.
  static void rank_failed(int status);

 private:
  void watch();
  std::string message() const;

  std::string phase_;
  std::string who_;
  WatchdogEnd end_;
  int failed_status_;  // 0: this rank has not failed
  std::chrono::milliseconds limit_;
  std::atomic<const char*> call_{""};
  std::mutex mutex_;
  std::condition_variable over_;
  bool done_ = false;
  std::thread thread_;
};

class CallWatchdog {
 public:
  CallWatchdog(std::chrono::milliseconds limit, std::string who, WatchdogEnd end);
  ~CallWatchdog();
  CallWatchdog(const CallWatchdog&) = delete;
  CallWatchdog& operator=(const CallWatchdog&) = delete;

  // `call` (a string literal) starts now and must end (disarm()) within the limit.
  void arm(const char* call);
  void disarm();

 private:
  void watch();

  std::chrono::milliseconds limit_;
  std::string who_;
  WatchdogEnd end_;
  std::mutex mutex_;
  std::condition_variable stop_;
  const char* call_ = nullptr;  // armed while not null
  std::chrono::steady_clock::time_point deadline_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace cmaf::cluster
