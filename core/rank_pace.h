// Which rank sets the pace of a data-parallel job.
//
// In lockstep every step lasts as long as the slowest rank's: the others wait for it in their
// collectives (gradient buckets, synchronised batch norm, the per-step sums). A rank on a
// loaded node, a throttled CPU or a slow disk slows the whole job, and nothing fails. Each rank
// measures, per step, its wall time and the part of it spent blocked in collectives
// (cluster::collective_wait_seconds); the rest is its own work ("busy": loading, forward,
// backward, optimizer). At each log step the ranks gather their means over the window; rank 0
// writes the summary to the step line of metrics.jsonl and warns when the slowest rank's busy
// time exceeds the other ranks' median by more than kStragglerMargin, naming the rank and its
// host. (Stall detection is for a rank that stops; this is for one that lags.) Only the step
// loop is measured: pool refreshes, validation and checkpoints are not. CPU training only: on a
// GPU the waits also cover the rank's own queued kernels (cluster/communicator.h), and backward
// runs on autograd's device threads, so the split would say little.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cluster/communicator.h"

namespace cmaf::core {

// The slowest rank is reported as a straggler when its busy time per step exceeds the median of
// the other ranks' by more than this fraction, and by more than kStragglerMinSeconds (short
// steps differ by a few milliseconds of noise).
inline constexpr double kStragglerMargin = 0.10;
inline constexpr double kStragglerMinSeconds = 0.005;

// One log window's means per step, per rank (index = rank).
struct PaceReport {
  std::vector<double> busy_seconds;
  std::vector<double> waited_seconds;
  std::vector<std::string> hosts;
  int64_t steps = 0;  // steps in the window

  int slowest_rank() const;
  // The median busy time per step of every rank but the slowest (the pace the job could keep).
  double others_median_busy() const;
  // The median wait per step of every rank but the slowest (how long they wait for it).
  double others_median_waited() const;
  // How much longer the slowest rank is busy than others_median_busy(), as a fraction (0.19: 19 %).
  double slowest_excess() const;
  bool straggler() const;
  // {"busy_s_median", "busy_s_max", "slowest_rank", "slowest_host", "slowest_excess", "waited_s_median",
  //  "others_waited_s_median"}
  nlohmann::json to_json() const;
  // "rank 3 on node07 was busy 0.820 s a step ..., 19 % more than the other ranks' median (0.690 s) ..."
  std::string warning() const;
};

class PaceMeter {
 public:
  // Collective over `world`: gathers every rank's host name.
  explicit PaceMeter(cluster::Communicator& world);
  // Around the work of one step (on the thread that waits for the step's collectives).
  void begin_step();
  void end_step();
  // Collective (every rank at the same step): the window's means of every rank; starts a new
  // window. Every rank gets the same report.
  PaceReport gather();
  // Whether rank 0 should log report.warning() now: a straggler not named in the last
  // kWarnEveryWindows windows (a lasting straggler is named again now and then, not at every log
  // step; two ranks that take turns are each named at most as often).
  bool should_warn(const PaceReport& report);

 private:
  static constexpr int64_t kWarnEveryWindows = 10;
  cluster::Communicator& world_;
  std::vector<std::string> hosts_;
  std::chrono::steady_clock::time_point step_start_;
  double wait_at_start_ = 0.0;
  double busy_ = 0.0;
  double waited_ = 0.0;
  int64_t steps_ = 0;
  int64_t windows_ = 0;                       // should_warn calls so far
  std::map<int, int64_t> last_warned_window_;  // rank -> the window it was last named in
};

}  // namespace cmaf::core
