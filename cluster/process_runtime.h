// The process's place in the job: MPI start-up and shut-down (RAII), world and node-local rank,
// host name, the launcher's environment, LibTorch's thread count.
//
// A process started by mpirun (OMPI_COMM_WORLD_SIZE) or srun --mpi=pmix (PMIX_RANK) initialises
// MPI and talks through MpiCommunicator; a plain process (no launcher) runs as world size 1 on
// the local communicator without touching MPI. MPI is initialised on a thread of its own (the MPI
// thread, cluster/mpi_thread.h), asking for MPI_THREAD_MULTIPLE (or CMAF_MPI_THREAD_LEVEL's
// level); where MPI provides only MPI_THREAD_FUNNELED or MPI_THREAD_SERIALIZED, every MPI call of
// the process is funnelled through that thread. MPI_THREAD_SINGLE is refused.
//
// LibTorch's default thread count is the CPUs (hardware threads) this rank may run on, shared
// with the ranks of its node that may run on them too: a launcher that binds each rank to its
// own cores (srun's task affinity, mpirun --map-by slot:PE=N) gives each rank its own CPUs'
// worth; unbound ranks (mpirun --bind-to none) split the node's CPUs; a process confined by
// taskset or a cpuset cgroup counts only the CPUs it has, not the machine's. A CPU quota (docker
// --cpus, a Kubernetes limit: cgroup_cpu_limit()), which the affinity mask does not show, caps it
// further at the quota's CPUs divided among the node's ranks (assumed to share the quota, as the
// ranks of one container do). More threads than that share logs a warning with the launcher's
// fix. The CPUs are the launcher's even where an OpenMP runtime bound the main thread to fewer
// before main() (launch_cpus()); where that put the main threads of several ranks on the same
// CPUs, local rank 0 logs a warning that says how to bind the ranks instead.
//
// MPI start-up (MPI_Init_thread, the node communicator) and shut-down (a barrier, then
// MPI_Finalize) each wait for every process of the job; a PhaseWatchdog (phase_watchdog.h) ends a
// rank whose peers have not arrived within the stall limit, naming the call, with kStallExitCode,
// instead of letting it wait forever. A rank that has failed (PhaseWatchdog::rank_failed) waits
// in the barrier only a short grace, then ends the whole job with its own status.
//
// Destroy every communicator before the runtime (MPI_Finalize runs in its destructor).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "cluster/communicator.h"
#include "cluster/cpu_placement.h"
#include "cluster/cpu_quota.h"
#include "cluster/phase_watchdog.h"

namespace cmaf::cluster {

class MpiThread;

struct LaunchEnvironment {
  std::string launcher = "none";  // "mpirun", "srun", "none"
  std::string rank;               // the world rank the launcher gave (before MPI is up); "" if none
  std::string slurm_job_id;
  std::string slurm_procid;
  std::string slurm_localid;
  std::string slurm_nodelist;
  std::string slurm_step_tasks;  // SLURM_STEP_NUM_TASKS: the tasks srun started in this step
  std::string pmi_rank;          // PMI_RANK: srun --mpi=pmi2 (which Debian's OpenMPI cannot use)
  std::string ompi_world_size, ompi_local_rank, ompi_local_size;  // OMPI_COMM_WORLD_*

  std::string describe() const;
};

LaunchEnvironment read_launch_environment();

// Throws ClusterError when srun started several tasks of this step but gave them no MPI plugin
// this build can use (srun without --mpi=pmix, or with --mpi=pmi2): each task would otherwise
// train alone as world size 1, all writing the same run folder. Nothing to say otherwise.
void check_launch_environment(const LaunchEnvironment& environment);

// This machine's host name, for messages ("[rank 3 on node17] ...").
std::string host_name();


// The most LibTorch threads a rank may ask for (a larger --threads is a typo, and OpenMP would
// end the process when it fails to start them).
inline constexpr int kMaxThreads = 1024;

struct RuntimeOptions {
  bool force_mpi = false;  // initialise MPI even without a launcher (singleton MPI)
  int threads = 0;         // LibTorch intra-op threads; 0: default_thread_count()
  // How long MPI start-up (and MPI_Finalize, unless shutdown_stall_limit) may wait for the others.
  std::chrono::milliseconds stall_limit = kDefaultStallLimit;
  // MPI shut-down's own limit where it should differ (0: stall_limit).
  std::chrono::milliseconds shutdown_stall_limit{0};
};

class ProcessRuntime {
 public:
  static std::unique_ptr<ProcessRuntime> start(int* argc, char*** argv, const RuntimeOptions& options = {});
  ~ProcessRuntime();
  ProcessRuntime(const ProcessRuntime&) = delete;
  ProcessRuntime& operator=(const ProcessRuntime&) = delete;

  bool uses_mpi() const { return mpi_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  int threads() const { return threads_; }
  // MPI's thread level (MPI_THREAD_*); -1 without MPI.
  int mpi_thread_level() const { return thread_level_; }
  // The CPUs the launcher gave this rank (launch_cpus()).
  int allowed_cpu_count() const {
    return static_cast<int>(local_cpus_.at(static_cast<size_t>(local_rank_)).size());
  }
  // Every node-local rank's CPUs as the launcher gave them (launch_cpus() of each), indexed by
  // local rank; the default thread count is computed from these.
  const std::vector<std::vector<int>>& local_cpus() const { return local_cpus_; }
  // The CPUs this rank's main thread was bound to at start-up (allowed_cpus()): fewer than its
  // launcher's where an OpenMP runtime bound it.
  const std::vector<int>& main_thread_cpus() const { return main_thread_cpus_; }
  // main_threads_sharing_cpus() for this node (logged by its local rank 0); "" when none share.
  const std::string& cpu_binding_warning() const { return cpu_binding_warning_; }
  const std::string& hostname() const { return hostname_; }
  const LaunchEnvironment& environment() const { return environment_; }

  // The world communicator of this process: mpi when launched, local otherwise. A positive
  // `stall_limit` replaces the default limit of the MPI stall watchdog; `node_shared_memory`
  // false keeps every mpi collective in MPI (mpi_communicator.h). Collective when launched.
  std::unique_ptr<Communicator> world_communicator(std::chrono::milliseconds stall_limit = {},
                                                   bool node_shared_memory = true) const;

  std::string describe() const;  // one log line

 private:
  ProcessRuntime();
  std::string who() const;  // "rank 3 on node17", for messages
  void start_mpi(int* argc, char*** argv, std::chrono::milliseconds stall_limit, const std::vector<int>& cpus,
                 const std::vector<int>& main_thread, std::vector<std::vector<int>>* local_cpus,
                 std::vector<std::vector<int>>* main_threads);
  void set_thread_count(int requested);  // threads_, and LibTorch's

  bool mpi_ = false;  // MPI is initialised (and this object finalises it)
  int thread_level_ = -1;
  std::unique_ptr<MpiThread> mpi_thread_;  // initialised MPI, finalises it, and funnels below MULTIPLE
  std::chrono::milliseconds shutdown_limit_ = kDefaultStallLimit;  // MPI shut-down's stall limit
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1, threads_ = 1;
  std::string hostname_;
  LaunchEnvironment environment_;
  std::vector<std::vector<int>> local_cpus_;
  std::vector<int> main_thread_cpus_;
  std::string cpu_binding_warning_;
};

}  // namespace cmaf::cluster
