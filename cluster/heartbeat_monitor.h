// Stall detection for the MPI backend, and for the NCCL backend's collectives over an MPI
// bootstrap (MpiCommunicator::new_heartbeat_monitor): a watchdog with a side channel that tells
// who has not arrived.
//
// Each rank runs a heartbeat thread on its own duplicate communicator (its calls beside the
// communication thread's, or below MPI_THREAD_MULTIPLE through the MPI thread's funnel,
// mpi_thread.h) that sends, every `period`, the number of the last collective it entered
// to every other rank (or gathered, below, to rank 0) and records what it hears. The
// communication thread makes blocking MPI calls (2-3x faster here than the non-blocking ones;
// funnelled, non-blocking ones completed on the MPI thread, so the heartbeat is not shut out)
// and tells the monitor when it enters and
// leaves each. When one has lasted longer than the stall limit, the heartbeat thread logs which
// ranks are missing: alive but behind (they never reached this collective: a hang elsewhere, or
// another code path), or silent (no heartbeat for several periods: dead, or stuck with MPI
// unprogressed), tells every other rank over the channel (only the next rank where a peer has
// announced this stall already), waits a moment (2 s, or four periods) and aborts the job with
// kStallExitCode.
// A rank told of a stall logs its own view once: in the collective too (and whom it misses), or
// not there yet, so that it is the one the others wait for. So every live rank logs the
// diagnosis, the stalled one included (its heartbeat thread runs while its main thread is
// stuck), even when another rank's abort comes first.
//
// Above `all_to_all_ranks` ranks (StallOptions, 64 by default) the heartbeats are gathered
// instead: every rank sends its own to rank 0 alone, and a rank that has waited in a collective
// for half the stall limit (at most the limit less 4 periods) asks rank 0, every period, which
// ranks have not reached that collective or have not been heard from for 2 periods: rank 0's
// table lists those ranks with their last heartbeat and its age (the others have arrived). So a
// period costs N-1 messages instead of N(N-1), and a rank talks to rank 0 only (until a stall is
// announced to all). A rank without an answer from rank 0 for its current collective says that
// the others' state is unknown to it and that rank 0 has not answered.
//
// Rank-local work (begin_local_work: rank 0 writing a checkpoint alone, each rank's share of a
// pseudo-label refresh, of validation or of evaluation) makes a rank's heartbeats say "busy".
// Peers that wait for it in a collective past the stall limit, and whose missing ranks are all
// alive and busy, log a warning once and wait on, up to `busy_limit`: a slow file system is not a
// hang. Beyond it, or with any missing rank silent or idle, they abort as above. Once the busy
// ranks have arrived (every rank heard from and there), the collective has the stall limit again,
// counted from when they were last seen missing (checked every period), to complete. Gathered, a
// rank other than 0 sees them only in rank 0's tables, which it asks for from half the limit on:
// a busy rank that arrives before then leaves the collective at least half the limit.
//
// Once SIGTERM has arrived (note_ending_signal, phase_watchdog.h), a collective aborts as above at
// once, without waiting out the stall limit, while any rank of the channel (arrived or not) has
// been silent for kHurrySilentPeriods periods: the checkpoint the signal asks for cannot be
// agreed with that rank, and Slurm kills the job after KillWait anyway (srun
// --kill-on-bad-exit=1 sends SIGTERM to the other tasks when one dies). Gathered, a rank other
// than 0 asks rank 0 for its table from the collective's start then, and counts rank 0 as silent
// when it has not answered for as long. A rank alive but slow, or busy, is waited for as before.
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cluster/mpi_handle.h"
#include "cluster/phase_watchdog.h"

namespace cmaf::cluster {

inline constexpr std::chrono::milliseconds kDefaultHeartbeatPeriod{500};
inline constexpr int kDefaultAllToAllRanks = 64;

class HeartbeatMonitor {
 public:
  HeartbeatMonitor(MPI_Comm parent, std::chrono::milliseconds period, std::chrono::milliseconds limit,
                   std::chrono::milliseconds busy_limit, std::string host,
                   int all_to_all_ranks = kDefaultAllToAllRanks);
  ~HeartbeatMonitor();
  HeartbeatMonitor(const HeartbeatMonitor&) = delete;
  HeartbeatMonitor& operator=(const HeartbeatMonitor&) = delete;

  // Called by the communication thread around each collective.
  void entered(int64_t sequence, const char* call, int64_t bytes);
  void left();

  // Work of this rank alone, outside any collective (what: "writing checkpoint step-00000100").
  // Its heartbeats say "busy" until it enters its next collective: ending the mark any earlier
  // would let a heartbeat between the two say "behind, idle" to peers that have waited past the
  // stall limit.
  void begin_local_work(const std::string& what);

  // Which ranks have not reached collective `sequence`, and why (one line per rank).
  std::string missing_ranks(int64_t sequence) const;

 private:
  using Clock = std::chrono::steady_clock;
  void loop();
  void exchange();
  void abort_if_stalled();
  [[noreturn]] void tell_peers_and_abort(int64_t sequence, std::chrono::milliseconds grace);
  // Who is missing from collective `sequence`, as far as this rank knows (gathered, not rank 0:
  // from a recent table of rank 0's); under mutex_.
  enum class Missing {
    kUnknown,       // gathered, and no recent table
    kSilentOrIdle,  // a rank silent, or behind and not busy
    kOnlyBusy,      // every missing rank alive and busy with work of its own (at least one)
    kNone,          // every rank heard from lately and there
  };
  Missing missing_state(int64_t sequence) const;
  // How long without a heartbeat makes a rank silent: kSilentPeriods periods, at least 2 s.
  Clock::duration silent_after() const;
  // Whether a rank of the channel has been silent for kHurrySilentPeriods periods, as far as this
  // rank knows (gathered, not rank 0: from rank 0's tables for this collective); under mutex_.
  bool waits_for_silent_rank() const;
  // Moves the stall clocks on by `overslept` (not past now) when a sleep of one period, or a
  // round's exchange, overran by seconds: the process was stopped or starved.
  void forgive_pause(Clock::duration overslept);
  // Logs a failed side-channel call (peer -1: none) once per call and peer; never throws.
  void note_failure(const char* call, int peer, int code);
  // One message of `tag` that has arrived, into *source and *sequence; false when none has (or
  // its receive failed, which is noted as `call`).
  bool receive(int tag, const char* call, int* source, int64_t* sequence);
  // Gathered heartbeats: rank 0 records a heartbeat; sends `peer`, waiting in `collective`, its
  // table for that collective (`tables`: those built this round); a rank takes tables in.
  void record_heartbeat(int source, int64_t heartbeat);
  void send_table(int peer, int64_t collective, std::map<int64_t, std::vector<int64_t>>* tables);
  void receive_tables();
  void take_table(const int64_t* table, int count);  // under mutex_
  // Whether this rank, not rank 0, should ask rank 0 for its table now; under mutex_.
  bool wants_table() const;
  // Whether this rank lacks a recent table of rank 0's for its current collective (gathered,
  // not rank 0), and so does not know the others; under mutex_.
  bool table_stale() const;
  // Starts a send of `count` values to `peer` (kept until MPI completes it); false when not sent.
  bool start_send(int peer, int tag, const int64_t* values, int count, const char* call);
  // The peer that announced a stall at collective `sequence` to every rank; -1: none.
  int announced_by(int64_t sequence) const;
  // Logs, once, this rank's view of the stall a peer announced before aborting the job.
  void report_peer_stall(int reporter, int64_t sequence);

  MpiComm comm_;  // the heartbeat channel, a duplicate of the parent
  int rank_ = 0;
  int size_ = 1;
  std::chrono::milliseconds period_;
  std::chrono::milliseconds limit_;
  std::chrono::milliseconds busy_limit_;
  std::string host_;
  std::vector<std::string> hosts_;  // every rank's, by rank in the channel
  // What the heartbeats send, read and written whole: the last collective entered times 2, plus
  // 1 from begin_local_work() until the next entered().
  std::atomic<int64_t> heartbeat_{0};
  std::string busy_what_;  // the last local work and its start, under mutex_
  Clock::time_point busy_since_;
  int64_t busy_wait_logged_ = -1;    // the collective whose wait for busy ranks was logged
  // The collective in which this rank last saw only busy ranks missing, and when (checked every
  // heartbeat round); under mutex_. The stall limit counts again from then once every rank has
  // arrived.
  int64_t busy_seen_sequence_ = -1;
  Clock::time_point busy_seen_at_;
  std::atomic<int64_t> entered_{0};
  bool in_collective_ = false;  // the rest of the current collective's record: under mutex_
  const char* call_ = "";
  int64_t bytes_ = 0;
  Clock::time_point started_;
  std::atomic<bool> stopping_{false};
  bool ending_ = false;  // an ending signal seen (ending_signal()); under mutex_
  Clock::time_point ending_since_;  // when this thread first saw it; under mutex_
  mutable std::mutex mutex_;
  std::vector<int64_t> last_sequence_;
  std::vector<char> peer_busy_;  // from the peer's last heartbeat
  std::vector<Clock::time_point> last_heard_;
  bool gathered_ = false;  // heartbeats through rank 0 (above all_to_all_ranks)
  Clock::time_point table_time_;  // when rank 0's last table arrived (gathered, not rank 0)
  int64_t table_collective_ = -1;  // the collective it was for; -1: none yet
  std::vector<int64_t> table_buffer_;  // a receive of rank 0's tables, posted while running
  MPI_Request table_request_ = MPI_REQUEST_NULL;
  struct PendingSend {
    MPI_Request request;
    std::unique_ptr<int64_t[]> value;  // the send buffer lives until the send completes
    int peer = 0;
  };
  std::vector<PendingSend> pending_;
  std::vector<int> unsent_;  // pending sends per peer
  std::set<std::string> logged_failures_;  // the heartbeat thread's, then the destructor's
  bool peer_stall_reported_ = false;       // likewise
  int64_t stall_sequence_ = 0;             // the stall announcement's send buffer
  int told_by_ = -1;            // the first peer that announced a stall (-1: none), and at which
  int64_t told_sequence_ = -1;  // collective; the heartbeat thread's, then the destructor's
  std::thread thread_;
};

}  // namespace cmaf::cluster
