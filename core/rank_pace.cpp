#include "core/rank_pace.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "cluster/process_runtime.h"
#include "common/error.h"

namespace cmaf::core {
namespace {

constexpr int64_t kHostWords = 8;  // a host name travels as 64 bytes (POSIX HOST_NAME_MAX)

// The middle value; the mean of the two middle ones for an even count.
double median(std::vector<double> values) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

std::vector<std::string> gather_hosts(cluster::Communicator& world) {
  const std::string mine = cluster::host_name();
  at::Tensor packed = at::zeros({kHostWords}, at::kLong);
  std::memcpy(packed.data_ptr(), mine.data(), std::min<size_t>(mine.size(), kHostWords * sizeof(int64_t) - 1));
  const at::Tensor all = world.all_gather(packed);
  std::vector<std::string> hosts;
  for (int64_t r = 0; r < all.size(0); ++r) {
    const at::Tensor row = all[r].contiguous();
    const char* text = static_cast<const char*>(row.data_ptr());
    hosts.emplace_back(text, strnlen(text, kHostWords * sizeof(int64_t)));
  }
  return hosts;
}

// The median of `values` without the slowest rank's.
double median_without(const std::vector<double>& values, int slowest) {
  std::vector<double> others;
  for (size_t r = 0; r < values.size(); ++r) {
    if (static_cast<int>(r) != slowest) others.push_back(values[r]);
  }
  return median(others);
}

}  // namespace

int PaceReport::slowest_rank() const {
  if (busy_seconds.empty()) return -1;
  return static_cast<int>(std::max_element(busy_seconds.begin(), busy_seconds.end()) - busy_seconds.begin());
}

double PaceReport::others_median_busy() const { return median_without(busy_seconds, slowest_rank()); }

double PaceReport::others_median_waited() const { return median_without(waited_seconds, slowest_rank()); }

bool PaceReport::straggler() const {
  if (busy_seconds.size() < 2) return false;
  const double gap = busy_seconds[static_cast<size_t>(slowest_rank())] - others_median_busy();
  return slowest_excess() > kStragglerMargin && gap > kStragglerMinSeconds;
}

double PaceReport::slowest_excess() const {
  const double others = others_median_busy();
  if (busy_seconds.size() < 2 || !(others > 0.0)) return 0.0;
  return busy_seconds[static_cast<size_t>(slowest_rank())] / others - 1.0;
}

nlohmann::json PaceReport::to_json() const {
  const int slowest = slowest_rank();
  return {{"busy_s_median", median(busy_seconds)},
          {"busy_s_max", slowest < 0 ? 0.0 : busy_seconds[static_cast<size_t>(slowest)]},
          {"slowest_rank", slowest},
          {"slowest_host", slowest < 0 || hosts.empty() ? std::string() : hosts[static_cast<size_t>(slowest)]},
          {"slowest_excess", slowest_excess()},
          {"waited_s_median", median(waited_seconds)},
          {"others_waited_s_median", others_median_waited()}};
}

std::string PaceReport::warning() const {
  const int slowest = slowest_rank();
  if (slowest < 0) return {};
  const size_t r = static_cast<size_t>(slowest);
  char numbers[320];
  std::snprintf(numbers, sizeof(numbers), " was busy %.3f s a step over the last %lld steps, %.0f %% more than the "
                "other ranks' median (%.3f s), which waited a median %.3f s a step for it",
                busy_seconds[r], static_cast<long long>(steps), 100.0 * slowest_excess(), others_median_busy(),
                others_median_waited());
  return str("rank ", slowest, hosts.size() > r ? " on " + hosts[r] : std::string(), numbers,
             ". The job runs at its pace: look for other load on that node, a throttled CPU or a slow disk "
             "(its loader), or move the job off it");
}

PaceMeter::PaceMeter(cluster::Communicator& world) : world_(world), hosts_(gather_hosts(world)) {}

void PaceMeter::begin_step() {
  step_start_ = std::chrono::steady_clock::now();
  wait_at_start_ = cluster::collective_wait_seconds();
}

void PaceMeter::end_step() {
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start_).count();
  const double waited = cluster::collective_wait_seconds() - wait_at_start_;
  busy_ += std::max(0.0, wall - waited);
  waited_ += waited;
  ++steps_;
}

PaceReport PaceMeter::gather() {
  const double n = static_cast<double>(std::max<int64_t>(1, steps_));
  at::Tensor mine = at::empty({2}, at::kDouble);
  mine[0] = busy_ / n;
  mine[1] = waited_ / n;
  const at::Tensor all = world_.all_gather(mine);
  PaceReport report;
  report.steps = steps_;
  report.hosts = hosts_;
  for (int64_t r = 0; r < all.size(0); ++r) {
    report.busy_seconds.push_back(all[r][0].item<double>());
    report.waited_seconds.push_back(all[r][1].item<double>());
  }
  busy_ = waited_ = 0.0;
  steps_ = 0;
  return report;
}

bool PaceMeter::should_warn(const PaceReport& report) {
  const int64_t window = windows_++;
  if (!report.straggler()) return false;
  const auto last = last_warned_window_.find(report.slowest_rank());
  if (last != last_warned_window_.end() && window - last->second < kWarnEveryWindows) return false;
  last_warned_window_[report.slowest_rank()] = window;
  return true;
}

}  // namespace cmaf::core
