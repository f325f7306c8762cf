// CPU quotas (cgroup v1 and v2) for the default LibTorch thread count (process_runtime.h): the
// affinity mask shows cpusets, not quotas such as docker --cpus or a Kubernetes CPU limit.
#pragma once

#include <string>

namespace cmaf::cluster {

// The CPU time this process's cgroup may use, in CPUs (docker --cpus=2.5, a Kubernetes CPU limit,
// systemd's CPUQuota): quota / period of cgroup v2's cpu.max or v1's cpu.cfs_quota_us and
// cpu.cfs_period_us, the smallest over the process's cgroup and those above it. 0 where none
// sets a quota. `self_cgroup`: the text of /proc/self/cgroup; `root`: where the cgroup file
// systems are mounted. Files that are missing or unreadable count as no quota.
double cgroup_cpu_limit(const std::string& self_cgroup, const std::string& root = "/sys/fs/cgroup");
// The same for this process (/proc/self/cgroup).
double cgroup_cpu_limit();
// A quota's share of threads for each of `local_ranks` ranks that share it (as the ranks of one
// container do): floor(limit / local_ranks), at least 1; 0 (no cap) without a quota.
int quota_thread_count(double limit_cpus, int local_ranks);

}  // namespace cmaf::cluster
