// What a rank knows of its peers (HeartbeatMonitor, heartbeat_monitor.h): the questions asked of
// their last heartbeats (silent, behind, busy, every rank there) and the words of a stall report;
// gathered above all_to_all_ranks, rank 0's tables that carry them. The heartbeat thread, its
// sends and receives and the stall decision are in heartbeat_monitor.cpp.
#include <algorithm>
#include <sstream>

#include "cluster/heartbeat_monitor.h"
#include "common/error.h"

namespace cmaf::cluster {
namespace {
// Tags 7001-7003 are heartbeat_monitor.cpp's.
// gathered: rank 0's table for collective C: C, then (rank, heartbeat, age in ms) for rank 0 and
// for each rank behind C or not heard from for 2 periods
constexpr int kTableTag = 7004;
constexpr int kSilentPeriods = 6;  // no heartbeat for this many periods, and kMinSilence: silent
// A thread the scheduler starves loses time, not periods: with short periods (the tests' 200 ms), a
// loaded machine would otherwise make a live rank silent.
constexpr std::chrono::seconds kMinSilence{2};
// Once the process is asked to end: a rank silent for this many periods is not waited for.
constexpr int kHurrySilentPeriods = 12;
}  // namespace

void HeartbeatMonitor::send_table(int peer, int64_t collective, std::map<int64_t, std::vector<int64_t>>* tables) {
  auto [entry, fresh] = tables->try_emplace(collective);
  std::vector<int64_t>& table = entry->second;
  if (fresh) {  // only the ranks the asker could be waiting for: the table stays small while all goes well
    std::lock_guard<std::mutex> lock(mutex_);
    const auto now = Clock::now();
    table.push_back(collective);
    for (int r = 0; r < size_; ++r) {
      const auto k = static_cast<size_t>(r);
      const int64_t age =
          r == rank_ ? 0 : std::chrono::duration_cast<std::chrono::milliseconds>(now - last_heard_[k]).count();
      if (r != rank_ && last_sequence_[k] >= collective && age <= 2 * period_.count()) continue;
      table.insert(table.end(), {r, r == rank_ ? heartbeat_.load() : 2 * last_sequence_[k] + peer_busy_[k], age});
    }
  }
  start_send(peer, kTableTag, table.data(), static_cast<int>(table.size()), "MPI_Isend(table)");
}

void HeartbeatMonitor::receive_tables() {
  // A receive stays posted and is tested, never waited for: a table that rank 0 stops sending
  // half-way (a large one goes in several pieces) must not hold this thread.
  for (;;) {
    if (table_request_ == MPI_REQUEST_NULL) {
      const int code = MPI_Irecv(table_buffer_.data(), static_cast<int>(table_buffer_.size()), MPI_INT64_T, 0,
                                 kTableTag, comm_, &table_request_);
      if (code != MPI_SUCCESS) {
        note_failure("MPI_Irecv(table)", 0, code);
        table_request_ = MPI_REQUEST_NULL;
        return;
      }
    }
    int done = 0;
    MPI_Status status;
    const int code = MPI_Test(&table_request_, &done, &status);
    if (code != MPI_SUCCESS) {
      note_failure("MPI_Test(table)", 0, code);
      return;
    }
    if (!done) return;
    int count = 0;
    MPI_Get_count(&status, MPI_INT64_T, &count);
    std::lock_guard<std::mutex> lock(mutex_);
    take_table(table_buffer_.data(), count);
  }
}

void HeartbeatMonitor::take_table(const int64_t* table, int count) {
  if (count < 1 || (count - 1) % 3 != 0) return;
  const auto now = Clock::now();
  const int64_t collective = table[0];
  std::vector<char> listed(static_cast<size_t>(size_), 0);
  for (int i = 1; i + 2 < count; i += 3) {
    const int64_t r = table[i];
    if (r < 0 || r >= size_ || r == rank_) continue;
    const auto k = static_cast<size_t>(r);
    listed[k] = 1;
    last_sequence_[k] = table[i + 1] / 2;
    peer_busy_[k] = static_cast<char>(table[i + 1] % 2);
    last_heard_[k] = now - std::chrono::milliseconds(std::max<int64_t>(0, table[i + 2]));
  }
  // Those not listed have reached the collective and were heard from lately.
  for (int r = 0; r < size_; ++r) {
    const auto k = static_cast<size_t>(r);
    if (r == rank_ || listed[k]) continue;
    last_sequence_[k] = std::max(last_sequence_[k], collective);
    peer_busy_[k] = 0;
    last_heard_[k] = now;
  }
  table_time_ = now;
  table_collective_ = collective;
}

bool HeartbeatMonitor::wants_table() const {
  // Early enough for an answer or two before the limit, also with a limit of a few periods.
  // Once the process is asked to end, from the start: a silent rank 0 must be known in time.
  const auto after = ending_ ? Clock::duration::zero()
                             : std::max<Clock::duration>(Clock::duration::zero(),
                                                         std::min<Clock::duration>(limit_ / 2, limit_ - 4 * period_));
  return gathered_ && rank_ != 0 && in_collective_ && Clock::now() - started_ >= after;
}

bool HeartbeatMonitor::table_stale() const {
  return gathered_ && rank_ != 0 &&
         (table_collective_ != entered_.load() || Clock::now() - table_time_ > silent_after());
}

HeartbeatMonitor::Missing HeartbeatMonitor::missing_state(int64_t sequence) const {
  if (table_stale()) return Missing::kUnknown;  // the others' state is unknown here
  const auto now = Clock::now();
  int busy = 0;
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    const auto k = static_cast<size_t>(r);
    if (now - last_heard_[k] > silent_after()) return Missing::kSilentOrIdle;  // silent
    if (last_sequence_[k] >= sequence) continue;                             // arrived
    if (!peer_busy_[k]) return Missing::kSilentOrIdle;                       // behind, not busy
    ++busy;
  }
  return busy > 0 ? Missing::kOnlyBusy : Missing::kNone;
}

HeartbeatMonitor::Clock::duration HeartbeatMonitor::silent_after() const {
  return std::max<Clock::duration>(kSilentPeriods * period_, kMinSilence);
}

bool HeartbeatMonitor::waits_for_silent_rank() const {
  const auto now = Clock::now();
  const auto silent = std::max<Clock::duration>(kHurrySilentPeriods * period_, silent_after());
  if (gathered_ && rank_ != 0) {  // the others as rank 0's tables, asked for every period, say
    if (table_collective_ != entered_.load()) return now - std::max(started_, ending_since_) > silent;
    if (now - table_time_ > silent) return true;  // rank 0 has stopped answering
  }
  for (int r = 0; r < size_; ++r) {
    if (r != rank_ && now - last_heard_[static_cast<size_t>(r)] > silent) return true;
  }
  return false;
}

std::string HeartbeatMonitor::missing_ranks(int64_t sequence) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::ostringstream out;
  const auto now = Clock::now();
  if (table_stale()) {  // gathered: what this rank knows of the others comes from rank 0
    const std::string last =
        table_collective_ == entered_.load()
            ? str("its last table is ", std::chrono::duration<double>(now - table_time_).count(), " s old")
            : str("no table for collective #", entered_.load(), " yet");
    return str("ranks not arrived: unknown here\n  rank 0 on ", hosts_[0], ", which gathers every rank's heartbeats, ",
               "has not answered this rank's questions (", last, "): dead, or stuck without progressing MPI\n");
  }
  int missing = 0;
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    const auto k = static_cast<size_t>(r);
    const double silent = std::chrono::duration<double>(now - last_heard_[k]).count();
    if (silent > std::chrono::duration<double>(silent_after()).count()) {
      out << "  rank " << r << " on " << hosts_[k] << ": no heartbeat for " << silent
          << " s (dead, or stuck without progressing MPI)\n";
      ++missing;
    } else if (last_sequence_[k] < sequence) {
      out << "  rank " << r << " on " << hosts_[k] << ": alive but has not reached collective #" << sequence
          << " (last entered #" << last_sequence_[k] << (peer_busy_[k] ? "; busy with work of its own" : "") << ")\n";
      ++missing;
    }
  }
  if (missing == 0) out << "  every rank has reached it (a slow network or device, or the limit is too short)\n";
  return str("ranks not arrived: ", missing, "\n", out.str());
}

}  // namespace cmaf::cluster
