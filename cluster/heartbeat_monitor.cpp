#include "cluster/heartbeat_monitor.h"

#include <glog/logging.h>

#include <algorithm>
#include <csignal>
#include <thread>

#include "cluster/cluster_error.h"
#include "cluster/mpi_communicator.h"
#include "cluster/mpi_thread.h"
#include "common/error.h"

namespace cmaf::cluster {
namespace {
constexpr int kHeartbeatTag = 7001;
constexpr int kStallTag = 7002;  // "I found a stall at collective #N": every live rank then logs its view
constexpr int kQueryTag = 7003;  // gathered: a heartbeat that also asks rank 0 for its table
// Tag 7004 (rank 0's tables) and what a rank knows of its peers: heartbeat_peers.cpp.
// A host name in the constructor's all-gather: Linux's longest (HOST_NAME_MAX, 64) and its terminator.
constexpr size_t kHostBytes = 72;

std::string signal_name(int signal) {
  if (signal == SIGTERM) return "SIGTERM";
  if (signal == SIGUSR1) return "SIGUSR1";
  return str("signal ", signal);
}
}  // namespace

HeartbeatMonitor::HeartbeatMonitor(MPI_Comm parent, std::chrono::milliseconds period,
                                   std::chrono::milliseconds limit, std::chrono::milliseconds busy_limit,
                                   std::string host, int all_to_all_ranks)
    : period_(period), limit_(limit), busy_limit_(std::max(limit, busy_limit)), host_(std::move(host)) {
  auto check = [&](int code, const char* call) {
    if (code != MPI_SUCCESS) {
      throw ClusterError(str(call, " (heartbeat channel) failed on rank ", rank_, " on ", host_, ": ",
                             mpi_error_text(code)));
    }
  };
  // The parent's rank for the messages below; the channel's own rank follows.
  mpi_call([&] { return MPI_Comm_rank(parent, &rank_); });
  check(mpi_comm_dup(parent, comm_.receive()), "MPI_Comm_dup");  // waits off the MPI thread
  mpi_run([&] {
    check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  });
  // Every rank's host, for the stall report's lines (truncated to kHostBytes - 1 characters).
  std::vector<char> mine(kHostBytes, '\0');
  std::copy_n(host_.begin(), std::min(host_.size(), kHostBytes - 1), mine.begin());
  std::vector<char> all(kHostBytes * static_cast<size_t>(size_));
  check(mpi_allgather(mine.data(), static_cast<int>(kHostBytes), MPI_CHAR, all.data(), static_cast<int>(kHostBytes),
                      MPI_CHAR, comm_),
        "MPI_Allgather(host names)");
  for (int r = 0; r < size_; ++r) hosts_.emplace_back(all.data() + kHostBytes * static_cast<size_t>(r));
  gathered_ = size_ > all_to_all_ranks;
  if (gathered_ && rank_ != 0) table_buffer_.resize(1 + 3 * static_cast<size_t>(size_));
  unsent_.assign(static_cast<size_t>(size_), 0);
  last_sequence_.assign(static_cast<size_t>(size_), 0);
  peer_busy_.assign(static_cast<size_t>(size_), 0);
  last_heard_.assign(static_cast<size_t>(size_), Clock::now());
  thread_ = std::thread([this] { loop(); });
}

HeartbeatMonitor::~HeartbeatMonitor() {
  stopping_.store(true);
  thread_.join();
  // Every rank stops sending before anyone frees the channel; then drain what is left, twice
  // (a table may still be on its way after the first round).
  for (int round = 0; round < 2; ++round) {
    const int code = mpi_barrier(comm_);
    if (code != MPI_SUCCESS) note_failure("MPI_Barrier", -1, code);
    mpi_run([this] { exchange(); });
  }
  mpi_run([this] {
    for (PendingSend& send : pending_) {
      MPI_Cancel(&send.request);
      MPI_Request_free(&send.request);
    }
    if (table_request_ != MPI_REQUEST_NULL) {
      MPI_Cancel(&table_request_);
      MPI_Wait(&table_request_, MPI_STATUS_IGNORE);
    }
  });
}  // comm_ frees itself

void HeartbeatMonitor::note_failure(const char* call, int peer, int code) {
  // The side channel's errors are not fatal: a peer it cannot reach shows in the stall report
  // as silent. Each kind of failure is logged once, so that a dead peer does not flood the log.
  const std::string key = str(call, "/", peer);
  if (!logged_failures_.insert(key).second) return;
  LOG(WARNING) << "[rank " << rank_ << " on " << host_ << "] heartbeat " << call
               << (peer >= 0 ? str(" with rank ", peer) : std::string()) << " failed: " << mpi_error_text(code)
               << " (logged once; the stall report names ranks that cannot be heard)";
}

bool HeartbeatMonitor::receive(int tag, const char* call, int* source, int64_t* sequence) {
  int flag = 0;
  MPI_Status status;
  if (MPI_Iprobe(MPI_ANY_SOURCE, tag, comm_, &flag, &status) != MPI_SUCCESS || !flag) return false;
  *source = status.MPI_SOURCE;
  const int code = MPI_Recv(sequence, 1, MPI_INT64_T, *source, tag, comm_, MPI_STATUS_IGNORE);
  if (code != MPI_SUCCESS) note_failure(call, *source, code);
  return code == MPI_SUCCESS;
}

void HeartbeatMonitor::exchange() {
  int source = 0;
  int64_t sequence = 0;
  // A peer that found a stall: log this rank's view once (its MPI_Abort ends the job).
  const auto take_announcements = [&] {
    while (receive(kStallTag, "MPI_Recv(stall)", &source, &sequence)) report_peer_stall(source, sequence);
  };
  take_announcements();
  // Every heartbeat that has arrived.
  while (receive(kHeartbeatTag, "MPI_Recv", &source, &sequence)) record_heartbeat(source, sequence);
  // Gathered: rank 0 answers every question with its table for the asker's collective (not once
  // shutting down); the others take in what it sent.
  std::map<int64_t, std::vector<int64_t>> tables;  // built this round, by collective
  while (receive(kQueryTag, "MPI_Recv(table request)", &source, &sequence)) {
    record_heartbeat(source, sequence);
    if (!stopping_.load()) send_table(source, sequence / 2, &tables);
  }
  if (gathered_ && rank_ != 0) receive_tables();
  // Again, now that the probes above have progressed MPI further: with many ranks, one probe
  // may not reach a stall announcement behind a backlog of heartbeats (a rank that was starved),
  // and a rank that hears of it before its own check does not announce it again.
  take_announcements();
  // Forget completed sends.
  std::vector<PendingSend> still_pending;
  for (PendingSend& send : pending_) {
    int done = 0;
    const int code = MPI_Test(&send.request, &done, MPI_STATUS_IGNORE);
    if (code != MPI_SUCCESS) note_failure("MPI_Test(MPI_Isend)", -1, code);
    // Kept until MPI reports it done: MPI may still read the buffer of a failed test.
    if (code != MPI_SUCCESS || !done) {
      still_pending.push_back(std::move(send));
    } else {
      --unsent_[static_cast<size_t>(send.peer)];
    }
  }
  pending_.swap(still_pending);
}

void HeartbeatMonitor::record_heartbeat(int source, int64_t heartbeat) {
  std::lock_guard<std::mutex> lock(mutex_);
  // A heartbeat is the last collective entered, times 2, plus 1 while in local work.
  last_sequence_[static_cast<size_t>(source)] = heartbeat / 2;
  peer_busy_[static_cast<size_t>(source)] = static_cast<char>(heartbeat % 2);
  last_heard_[static_cast<size_t>(source)] = Clock::now();
}

bool HeartbeatMonitor::start_send(int peer, int tag, const int64_t* values, int count, const char* call) {
  // A peer that takes nothing (dead, stopped) is not sent more: its unsent messages would pile
  // up. The others still hear from this rank.
  if (unsent_[static_cast<size_t>(peer)] >= 4) return false;
  PendingSend send{MPI_REQUEST_NULL, std::make_unique<int64_t[]>(static_cast<size_t>(count)), peer};
  std::copy(values, values + count, send.value.get());
  const int code = MPI_Isend(send.value.get(), count, MPI_INT64_T, peer, tag, comm_, &send.request);
  if (code != MPI_SUCCESS) {
    note_failure(call, peer, code);
    return false;
  }
  pending_.push_back(std::move(send));
  ++unsent_[static_cast<size_t>(peer)];
  return true;
}

void HeartbeatMonitor::entered(int64_t sequence, const char* call, int64_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  entered_.store(sequence);
  heartbeat_.store(2 * sequence);  // no longer busy
  in_collective_ = true;
  call_ = call;
  bytes_ = bytes;
  started_ = Clock::now();
}

void HeartbeatMonitor::left() {
  std::lock_guard<std::mutex> lock(mutex_);
  in_collective_ = false;
}

void HeartbeatMonitor::begin_local_work(const std::string& what) {
  std::lock_guard<std::mutex> lock(mutex_);
  busy_what_ = what;
  busy_since_ = Clock::now();
  heartbeat_.fetch_or(1);
}

void HeartbeatMonitor::abort_if_stalled() {
  int64_t sequence = 0;
  const char* call = "";
  int64_t bytes = 0;
  double waited = 0.0;
  bool busy_peers = false;  // waiting on, within the busy limit
  bool only_busy = false;   // every missing rank is alive and busy with work of its own
  bool ending = false;      // within the limit, but the process is asked to end and a rank is silent
  int signal = 0;
  double since_busy = -1.0;  // seconds since the busy ranks were last seen missing; -1: they never were
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto now = Clock::now();
    const auto waiting = now - started_;
    if (!in_collective_) return;
    sequence = entered_.load();
    // Every round, not only past the limit: a busy rank may arrive just before it.
    const Missing missing = missing_state(sequence);
    const bool busy_now = missing == Missing::kOnlyBusy;
    if (busy_now) {
      busy_seen_sequence_ = sequence;
      busy_seen_at_ = now;
    }
    ending = waiting <= limit_ && ending_ && waits_for_silent_rank();
    signal = ending_signal();
    if (waiting <= limit_ && !ending) return;
    call = call_;
    bytes = bytes_;
    waited = std::chrono::duration<double>(waiting).count();
    only_busy = !ending && busy_now;
    if (!only_busy && !ending && busy_seen_sequence_ == sequence && missing == Missing::kNone) {
      // The busy ranks have arrived (a rank's mark ends as it enters the collective) since this
      // rank last saw them missing: the collective has the stall limit from then to complete, else
      // the moment between the last one's arrival and the end of the collective would be a stall.
      // A busy rank gone silent instead, or one behind and idle, is a stall at once, as before.
      if (now - busy_seen_at_ <= limit_) return;
      since_busy = std::chrono::duration<double>(now - busy_seen_at_).count();
    }
    busy_peers = only_busy && waiting <= busy_limit_;
    if (busy_peers) {
      if (busy_wait_logged_ == sequence) return;
      busy_wait_logged_ = sequence;
    }
  }
  if (busy_peers) {  // logged once per collective, outside the lock (logging may block)
    LOG(WARNING) << "[rank " << rank_ << " on " << host_ << "] collective #" << sequence << " (" << call
                 << ") has waited " << waited << " s, past the stall limit of "
                 << std::chrono::duration<double>(limit_).count() << " s, for ranks busy with work of their own "
                 << "(their logs say what); waiting for them up to " << std::chrono::duration<double>(busy_limit_).count()
                 << " s. " << missing_ranks(sequence);
    return;
  }
  // Logging may block (glog's file on a hung file system): the job ends after the grace anyway.
  // The grace lets each peer hear of the stall (within a period) and its log line reach the
  // launcher's output before the abort kills it: 1 s was close on a loaded machine.
  const auto grace = std::max(std::chrono::milliseconds(2000), 4 * period_);
  exit_after(grace + kAbortDeadline, kStallExitCode);
  const double limit = std::chrono::duration<double>(only_busy ? busy_limit_ : limit_).count();
  LOG(ERROR) << "[rank " << rank_ << " on " << host_ << "] stall: collective #" << sequence << " (" << call
             << ", " << bytes << " bytes) has waited " << waited << " s, "
             << (ending ? str("and ", signal_name(signal), " was received (the job is ending) while a rank ",
                              "is silent: not waiting out the stall limit of ", limit, " s; ")
                 : only_busy ? str("more than the limit for ranks busy with work of their own, ", limit, " s; ")
                 : since_busy >= 0.0
                     ? str("of which ", since_busy, " s since the ranks busy with work of their own were last seen ",
                           "missing, more than the stall limit of ", limit, " s; ")
                     : str("more than the stall limit of ", limit, " s; "))
             << missing_ranks(sequence) << "aborting the job (exit status " << kStallExitCode
             << (announced_by(sequence) >= 0 ? str("; rank ", told_by_, " announced this stall already")
                                              : std::string())
             << ")";
  google::FlushLogFiles(google::GLOG_ERROR);
  tell_peers_and_abort(sequence, grace);
}

// Tells the others, so that every live rank logs what it sees (the stalled rank included: its
// heartbeat thread runs while its main thread is stuck), and gives them `grace` to before the
// abort ends the job. Where a peer has announced this stall already, only to the next rank: ranks
// that find a stall at about the same time would otherwise send N(N-1) messages (and, gathered,
// open most of the connections between pairs of ranks that the gathered mode avoids) while the
// job is ending; the next rank hears of it even if the peer's message to it was lost. The abort
// is still this rank's own.
void HeartbeatMonitor::tell_peers_and_abort(int64_t sequence, std::chrono::milliseconds grace) {
  stall_sequence_ = sequence;
  peer_stall_reported_ = true;  // this rank's own report says it all
  const bool told = announced_by(sequence) >= 0;
  const int next = (rank_ + 1) % size_;
  mpi_run([&] {
    for (int r = 0; r < size_; ++r) {
      if (r == rank_ || (told && r != next)) continue;
      MPI_Request request = MPI_REQUEST_NULL;
      const int code = MPI_Isend(&stall_sequence_, 1, MPI_INT64_T, r, kStallTag, comm_, &request);
      if (code == MPI_SUCCESS) {
        MPI_Request_free(&request);  // nothing waits for it: the buffer is a member, the abort follows
      } else {
        note_failure("MPI_Isend(stall)", r, code);
      }
    }
  });
  const auto grace_end = Clock::now() + grace;
  while (Clock::now() < grace_end) {
    mpi_run([this] { exchange(); });  // keeps MPI progressing the sends
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  mpi_abort(kStallExitCode);
}

int HeartbeatMonitor::announced_by(int64_t sequence) const {
  return told_sequence_ == sequence ? told_by_ : -1;
}

void HeartbeatMonitor::report_peer_stall(int reporter, int64_t sequence) {
  // The first announcement, or the first for the collective this rank is in: that peer has told
  // every rank of it.
  if (told_by_ < 0 || (told_sequence_ != sequence && sequence == entered_.load())) {
    told_by_ = reporter;
    told_sequence_ = sequence;
  }
  if (peer_stall_reported_) return;
  peer_stall_reported_ = true;
  std::string here;
  bool behind = false;
  bool unknown = false;  // gathered, and no recent table from rank 0: the reporter's list says it
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const int64_t mine = entered_.load();
    behind = mine < sequence;
    unknown = table_stale();
    if (in_collective_ && mine == sequence) {
      here = str("this rank is in it too (", call_, ", ", bytes_, " bytes) since ",
                 std::chrono::duration<double>(Clock::now() - started_).count(), " s; ");
    } else if (behind) {
      here = str("this rank has not reached it (last entered #", mine, in_collective_ ? ", and is still in it" : "",
                 heartbeat_.load() % 2 ? str("; busy ", std::chrono::duration<double>(Clock::now() - busy_since_).count(),
                                    " s with work of its own: ", busy_what_)
                              : std::string(),
                 "): the others are waiting for it; ");
    } else {
      here = str("this rank has passed it (at collective #", mine, "); ");
    }
  }
  LOG(ERROR) << "[rank " << rank_ << " on " << host_ << "] stall reported by rank " << reporter << " at collective #"
             << sequence << ": " << here
             << (behind    ? std::string()
                 : unknown ? std::string("(its log names the missing ranks) ")
                           : missing_ranks(sequence))
             << "the job is being aborted (exit status " << kStallExitCode << ")";
  google::FlushLogFiles(google::GLOG_ERROR);
}

void HeartbeatMonitor::loop() {
  auto last_check = Clock::now();
  while (!stopping_.load()) {
    // A pause in the last sleep is forgiven before this round's exchange, so that what it hears
    // (a table's ages) is not moved on by it; one in the exchange itself, just before the check.
    const auto round = Clock::now();
    forgive_pause(round - last_check - period_);
    const int64_t heartbeat = heartbeat_.load();
    bool ask = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const bool ending = ending_signal() != 0;
      if (ending && !ending_) ending_since_ = Clock::now();
      ending_ = ending;
      ask = wants_table();
    }
    mpi_run([&] {  // one block on the MPI thread where calls are funnelled
      if (!gathered_) {
        for (int r = 0; r < size_; ++r) {
          if (r != rank_) start_send(r, kHeartbeatTag, &heartbeat, 1, "MPI_Isend");
        }
      } else if (rank_ != 0) {  // rank 0 hears everyone, and answers questions in exchange()
        start_send(0, ask ? kQueryTag : kHeartbeatTag, &heartbeat, 1,
                   ask ? "MPI_Isend(table request)" : "MPI_Isend");
      }
      exchange();
    });
    // A stop between the round's start and the check (a suspended job) is not counted as waiting.
    const auto now = Clock::now();
    forgive_pause(now - round);
    last_check = now;
    abort_if_stalled();
    std::this_thread::sleep_for(period_);
  }
}

void HeartbeatMonitor::forgive_pause(Clock::duration overslept) {
  // A sleep of one period that took seconds longer: the process was stopped (SIGSTOP: a Slurm
  // job suspended by scontrol or gang scheduling, a debugger) or starved. Its peers were most
  // likely stopped with it; the time is not counted as waiting for them, nor as their silence.
  if (overslept < std::max<Clock::duration>(std::chrono::seconds(1), 2 * period_)) return;
  {
    // Each clock moved on by the pause, but not past now: one set after it (a heartbeat heard in
    // this round's exchange) is left as it is.
    std::lock_guard<std::mutex> lock(mutex_);
    const auto now = Clock::now();
    const auto skip = [&](Clock::time_point* clock) { *clock = std::min(*clock + overslept, now); };
    skip(&started_);
    skip(&busy_seen_at_);
    skip(&table_time_);
    skip(&ending_since_);
    for (Clock::time_point& heard : last_heard_) skip(&heard);
  }
  LOG(WARNING) << "[rank " << rank_ << " on " << host_ << "] this process was paused for "
               << std::chrono::duration<double>(overslept).count()
               << " s (a suspended job, or a starved machine): the stall clock skips that time";
}

}  // namespace cmaf::cluster
