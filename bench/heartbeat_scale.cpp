// What the stall detector's heartbeat channel (cluster/heartbeat_monitor.h) costs each rank, and
// how fast it reports a stall, at a given number of ranks: all to all (up to 64 ranks by default)
// or gathered at rank 0 (above). Run by bench/heartbeat_scale.sh; results in BENCHMARKS.md.
//
//   heartbeat_scale MODE SECONDS [ALL_TO_ALL_RANKS]
//     none     no heartbeat channel: what a rank that sleeps costs anyway (MPI's own threads)
//     idle     a channel, every rank outside any collective, for SECONDS
//     waiting  a channel, every rank inside one collective past half the stall limit (gathered,
//              each rank other than 0 then asks rank 0 for its table every period), for SECONDS
//     stall    a channel with a stall limit of SECONDS; the last rank never enters the collective
//              the others wait in. The job should exit with the stall status, every rank having
//              logged the diagnosis; rank 0 prints when the wait began.
// The first three print, on rank 0, the CPU time each rank used over the window (getrusage: all
// of its threads; the main thread sleeps), as milliseconds per second: rank 0's, and the median
// and largest of the others'. ALL_TO_ALL_RANKS: StallOptions::all_to_all_ranks (1: gathered).
#include <glog/logging.h>
#include <mpi.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cluster/heartbeat_monitor.h"
#include "cluster/mpi_thread.h"
#include "cluster/process_runtime.h"

namespace {

using Seconds = std::chrono::duration<double>;

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + 1e-6 * t.tv_usec; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// This rank's CPU milliseconds per second of wall time while it sleeps `seconds`.
double cpu_rate(int seconds) {
  const double cpu0 = cpu_seconds();
  const auto wall0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  const double wall = Seconds(std::chrono::steady_clock::now() - wall0).count();
  return 1000.0 * (cpu_seconds() - cpu0) / wall;
}

int usage() {
  std::fprintf(stderr, "usage: heartbeat_scale none|idle|waiting|stall SECONDS [ALL_TO_ALL_RANKS]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // HEARTBEAT_SCALE_LOG_DIR: each process also writes its log there itself (glog's files), so a
  // line that the launcher had no time to forward before MPI_Abort is still on record.
  const char* log_dir = std::getenv("HEARTBEAT_SCALE_LOG_DIR");
  if (log_dir != nullptr && *log_dir != '\0') {
    FLAGS_log_dir = log_dir;
    FLAGS_alsologtostderr = true;
  } else {
    FLAGS_logtostderr = true;
  }
  google::InitGoogleLogging(argv[0]);
  if (argc < 3) return usage();
  const std::string mode = argv[1];
  const int seconds = std::atoi(argv[2]);
  const int all_to_all = argc > 3 ? std::atoi(argv[3]) : cmaf::cluster::kDefaultAllToAllRanks;
  if ((mode != "none" && mode != "idle" && mode != "waiting" && mode != "stall") || seconds < 1 || all_to_all < 1) {
    return usage();
  }
  cmaf::cluster::RuntimeOptions options;
  options.force_mpi = true;
  options.threads = 1;
  options.stall_limit = std::chrono::seconds(600);  // a hundred ranks on two cores start slowly
  auto runtime = cmaf::cluster::ProcessRuntime::start(&argc, &argv, options);
  const int rank = runtime->rank();
  const int size = runtime->size();
  // The stall limit: past the run for idle; waiting measures from half its limit plus 1 s after
  // entering, for SECONDS, and leaves 4 s before the limit.
  const int waiting_limit = 2 * seconds + 10;
  const int limit = mode == "stall" ? seconds : mode == "waiting" ? waiting_limit : 4 * seconds + 60;
  std::unique_ptr<cmaf::cluster::HeartbeatMonitor> monitor;
  if (mode != "none") {
    monitor = std::make_unique<cmaf::cluster::HeartbeatMonitor>(
        MPI_COMM_WORLD, cmaf::cluster::kDefaultHeartbeatPeriod, std::chrono::seconds(limit),
        std::chrono::milliseconds(0), cmaf::cluster::host_name(), all_to_all);
  }
  cmaf::cluster::mpi_barrier(MPI_COMM_WORLD);
  if (mode == "stall") {
    if (rank == 0) {
      const auto now = std::chrono::system_clock::now().time_since_epoch();
      std::printf("heartbeat_scale: %d ranks, stall limit %d s, waiting from %.3f\n", size, seconds,
                  Seconds(now).count());
      std::fflush(stdout);
    }
    if (rank != size - 1) monitor->entered(1, "MPI_Allreduce (heartbeat_scale)", 8);
    std::this_thread::sleep_for(std::chrono::seconds(3 * seconds + 120));
    std::fprintf(stderr, "heartbeat_scale: rank %d: no stall reported within %d s\n", rank, 3 * seconds + 120);
    return 1;
  }
  // Every mode measures from the same moment, as waiting must: its collective entered at 2 s (the
  // heartbeat thread's first rounds), the window from half its limit plus 1 s after that. A job's
  // first seconds cost more (the first heartbeats connect the peers): idle measured from 2 s took
  // 1.4-1.8 times the CPU of idle from 12 s at 8 ranks, and more than waiting.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  if (mode == "waiting") monitor->entered(1, "MPI_Allreduce (heartbeat_scale)", 8);
  std::this_thread::sleep_for(std::chrono::seconds(waiting_limit / 2 + 1));
  const double rate = cpu_rate(seconds);
  if (mode == "waiting") monitor->left();
  std::vector<double> rates(static_cast<size_t>(size));
  cmaf::cluster::mpi_allgather(&rate, 1, MPI_DOUBLE, rates.data(), 1, MPI_DOUBLE, MPI_COMM_WORLD);
  if (rank == 0) {
    std::vector<double> others(rates.begin() + 1, rates.end());
    std::sort(others.begin(), others.end());
    double total = 0;
    for (double r : rates) total += r;
    const double median = others.empty() ? 0.0 : others[others.size() / 2];
    const double largest = others.empty() ? 0.0 : others.back();
    std::printf("heartbeat_scale: %s, %d ranks, %s, %d s: CPU ms per s: rank 0 %.2f, others median %.2f, "
                "largest %.2f; all ranks together %.1f\n",
                mode.c_str(), size, mode == "none" ? "no channel" : size > all_to_all ? "gathered" : "all to all",
                seconds, rates[0], median, largest, total);
  }
  monitor.reset();
  runtime.reset();
  return 0;
}
