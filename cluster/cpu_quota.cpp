#include "cluster/cpu_quota.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

namespace cmaf::cluster {
namespace {

// The first line of the file at `path`, or nullopt where it cannot be read.
std::optional<std::string> first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  return line;
}

// Quota / period in CPUs from cgroup v2's cpu.max ("max 100000", "250000 100000"); 0: no quota.
double cpu_max_limit(const std::string& path) {
  const std::optional<std::string> line = first_line(path);
  if (!line) return 0.0;
  std::istringstream in(*line);
  std::string quota;
  double period = 0.0;
  if (!(in >> quota >> period) || quota == "max" || period <= 0.0) return 0.0;
  char* end = nullptr;
  const double q = std::strtod(quota.c_str(), &end);
  return end != quota.c_str() && *end == '\0' && q > 0.0 ? q / period : 0.0;
}

// cgroup v1's cpu.cfs_quota_us (-1: none) / cpu.cfs_period_us in `dir`; 0: no quota.
double cfs_limit(const std::string& dir) {
  const std::optional<std::string> quota = first_line(dir + "/cpu.cfs_quota_us");
  const std::optional<std::string> period = first_line(dir + "/cpu.cfs_period_us");
  if (!quota || !period) return 0.0;
  const double q = std::strtod(quota->c_str(), nullptr);
  const double p = std::strtod(period->c_str(), nullptr);
  return q > 0.0 && p > 0.0 ? q / p : 0.0;
}

// `path` and every cgroup above it ("/a/b", "/a", "/"), `limit_at` of each; the smallest quota.
template <typename LimitAt>
double smallest_limit(std::string path, const LimitAt& limit_at) {
  if (path.empty() || path.front() != '/') path = "/" + path;
  double smallest = 0.0;
  for (;;) {
    const double limit = limit_at(path == "/" ? std::string() : path);
    if (limit > 0.0 && (smallest == 0.0 || limit < smallest)) smallest = limit;
    if (path == "/") return smallest;
    const size_t slash = path.find_last_of('/');
    path = slash == 0 ? "/" : path.substr(0, slash);
  }
}

}  // namespace

double cgroup_cpu_limit(const std::string& self_cgroup, const std::string& root) {
  // Lines "hierarchy-ID:controllers:path": "0::/path" is cgroup v2; v1 has one line per hierarchy,
  // the one whose controllers include "cpu" mounted at root/<controllers> or root/cpu.
  // Inside a container the path may be the host's, above the container's root: the walk up to
  // "/" then finds the container's own limit at the mount's top.
  std::istringstream lines(self_cgroup);
  std::string line;
  double limit = 0.0;
  const auto take = [&](double found) {
    if (found > 0.0 && (limit == 0.0 || found < limit)) limit = found;
  };
  while (std::getline(lines, line)) {
    const size_t first = line.find(':');
    const size_t second = first == std::string::npos ? std::string::npos : line.find(':', first + 1);
    if (second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    const std::string path = line.substr(second + 1);
    if (line.compare(0, first, "0") == 0 && controllers.empty()) {
      take(smallest_limit(path, [&](const std::string& p) { return cpu_max_limit(root + p + "/cpu.max"); }));
      continue;
    }
    std::istringstream names(controllers);
    std::string name;
    bool cpu = false;
    while (std::getline(names, name, ',')) cpu = cpu || name == "cpu";
    if (!cpu) continue;
    // Mounted as root/<controllers> ("cpu,cpuacct"), or only as root/cpu.
    std::string mount = root + "/" + controllers;
    if (!std::filesystem::is_directory(mount)) mount = root + "/cpu";
    take(smallest_limit(path, [&](const std::string& p) { return cfs_limit(mount + p); }));
  }
  return limit;
}

double cgroup_cpu_limit() {
  std::ifstream in("/proc/self/cgroup");
  std::stringstream text;
  text << in.rdbuf();
  return cgroup_cpu_limit(text.str());
}

int quota_thread_count(double limit_cpus, int local_ranks) {
  if (!(limit_cpus > 0.0)) return 0;
  return std::max(1, static_cast<int>(std::floor(limit_cpus / std::max(1, local_ranks))));
}

}  // namespace cmaf::cluster
