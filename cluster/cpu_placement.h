// Where a rank's threads may run: the CPUs of its affinity mask, those the launcher gave it (as an
// OpenMP runtime's binding may hide them), main threads of one node's ranks sharing CPUs, and
// LibTorch's default thread count from them (ProcessRuntime, process_runtime.h, uses these).
#pragma once

#include <string>
#include <vector>

namespace cmaf::cluster {

// "0-3,8": CPU numbers, in increasing order, as ranges.
std::string cpu_ranges(const std::vector<int>& cpus);

// The CPUs the calling thread may run on (its affinity mask), in increasing order.
std::vector<int> allowed_cpus();

// The CPUs the launcher gave this process, in increasing order. An OpenMP runtime told to bind
// threads (OMP_PROC_BIND, OMP_PLACES, GOMP_CPU_AFFINITY; HPC sites often set them for every job)
// binds the main thread to its first place, and libgomp, LibTorch's OpenMP on Linux, does so as
// it loads, before main(): allowed_cpus() then sees that one place. The places were built from
// the launcher's mask, so where the main thread holds fewer CPUs than the places together, this
// returns their union; otherwise allowed_cpus(). The OpenMP runtime is whichever one is loaded
// (found through dlsym); without one, allowed_cpus().
std::vector<int> launch_cpus();

// The ranks of one node, by local rank: the CPUs each launcher mask gave them (launch_cpus()) and
// the CPUs their main threads are bound to (allowed_cpus() on the main thread). Where an OpenMP
// runtime narrowed some rank's main thread to CPUs that another rank's main thread holds too,
// they compute on the same CPUs while others idle: a warning that names the ranks, the shared and
// the idle CPUs and the fix. Empty otherwise (ranks the launcher itself put on the same CPUs
// included: that was asked for). `binding`: the variables that asked the OpenMP runtime to bind,
// as the message should name them ("OMP_PROC_BIND=true").
std::string main_threads_sharing_cpus(const std::vector<std::vector<int>>& launch,
                                      const std::vector<std::vector<int>>& main_threads, const std::string& binding);

// The OpenMP binding variables set in this process's environment, "NAME=value" joined by ", ";
// "" when none is.
std::string openmp_binding_variables();

// The default LibTorch thread count of node-local rank `local_rank`, given every local rank's
// allowed CPUs (each list in increasing order, as allowed_cpus() returns them): its own CPUs
// divided among the local ranks whose CPUs overlap them (itself included), at least 1.
int default_thread_count(const std::vector<std::vector<int>>& local_cpus, int local_rank);

}  // namespace cmaf::cluster
