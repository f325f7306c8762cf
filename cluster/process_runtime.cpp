#include "cluster/process_runtime.h"

#include <ATen/Parallel.h>
#include <glog/logging.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <thread>

#include "cluster/cluster_error.h"
#include "cluster/local_communicator.h"
#include "cluster/mpi_communicator.h"
#include "cluster/mpi_handle.h"
#include "cluster/mpi_thread.h"

namespace cmaf::cluster {
namespace {

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

// `who`: "rank 3 on node17", as ProcessRuntime::who() says it.
void mpi_check(int code, const char* call, const std::string& who) {
  if (code != MPI_SUCCESS) throw ClusterError(str(call, " failed on ", who, ": ", mpi_error_text(code)));
}

// Every node-local rank's allowed CPUs, gathered over the node communicator as bit masks.
std::vector<std::vector<int>> gather_allowed_cpus(MPI_Comm node, const std::vector<int>& mine,
                                                  const std::string& who) {
  int words = mine.empty() ? 1 : mine.back() / 64 + 1;
  mpi_check(MPI_Allreduce(MPI_IN_PLACE, &words, 1, MPI_INT, MPI_MAX, node),
            "MPI_Allreduce(CPU mask words)", who);
  std::vector<uint64_t> bits(static_cast<size_t>(words), 0);
  for (int cpu : mine) bits[static_cast<size_t>(cpu / 64)] |= uint64_t{1} << (cpu % 64);
  int size = 1;
  mpi_check(MPI_Comm_size(node, &size), "MPI_Comm_size(node)", who);
  std::vector<uint64_t> all(bits.size() * static_cast<size_t>(size));
  mpi_check(MPI_Allgather(bits.data(), words, MPI_UINT64_T, all.data(), words, MPI_UINT64_T, node),
            "MPI_Allgather(CPU masks)", who);
  std::vector<std::vector<int>> cpus(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) {
    for (int cpu = 0; cpu < 64 * words; ++cpu) {
      const uint64_t word = all[static_cast<size_t>(r * words + cpu / 64)];
      if (word >> (cpu % 64) & 1U) cpus[static_cast<size_t>(r)].push_back(cpu);
    }
  }
  return cpus;
}

// How to give each rank `threads` CPUs with this launcher.
std::string oversubscription_hint(const std::string& launcher, int threads) {
  if (launcher == "mpirun") {
    return str("OpenMPI's mpirun binds each rank to one core by default for 2 ranks or fewer: pass "
               "--bind-to none, or --map-by slot:PE=", threads, " to give each rank that many cores");
  }
  if (launcher == "srun") return str("Ask Slurm for --cpus-per-task=", threads, " or pass fewer --threads");
  return "The process is confined (taskset, a cpuset cgroup): widen its CPUs or pass fewer --threads";
}

}  // namespace

std::string host_name() {
  char buffer[256] = {0};
  ::gethostname(buffer, sizeof(buffer) - 1);
  return buffer;
}

LaunchEnvironment read_launch_environment() {
  LaunchEnvironment e;
  // mpirun first: run inside a Slurm step, its ranks see SLURM_STEP_ID and (from ORTE's PMIx
  // server) PMIX_RANK too, while srun's tasks get no OMPI_COMM_WORLD_* before MPI_Init.
  if (!env("OMPI_COMM_WORLD_SIZE").empty()) {
    e.launcher = "mpirun";
    e.rank = env("OMPI_COMM_WORLD_RANK");
  } else if (!env("SLURM_STEP_ID").empty() && !env("PMIX_RANK").empty()) {
    e.launcher = "srun";
    e.rank = env("PMIX_RANK");
  }
  e.slurm_job_id = env("SLURM_JOB_ID");
  e.slurm_procid = env("SLURM_PROCID");
  e.slurm_localid = env("SLURM_LOCALID");
  e.slurm_nodelist = env("SLURM_JOB_NODELIST");
  e.slurm_step_tasks = env("SLURM_STEP_NUM_TASKS");
  e.pmi_rank = env("PMI_RANK");
  e.ompi_world_size = env("OMPI_COMM_WORLD_SIZE");
  e.ompi_local_rank = env("OMPI_COMM_WORLD_LOCAL_RANK");
  e.ompi_local_size = env("OMPI_COMM_WORLD_LOCAL_SIZE");
  return e;
}

void check_launch_environment(const LaunchEnvironment& e) {
  if (e.launcher != "none" || e.slurm_procid.empty()) return;
  if (e.slurm_step_tasks.empty()) return;  // not in a step: nothing to check
  char* end = nullptr;
  errno = 0;
  const long tasks = std::strtol(e.slurm_step_tasks.c_str(), &end, 10);
  if (end == e.slurm_step_tasks.c_str() || *end != '\0' || errno == ERANGE || tasks < 1) {
    throw ClusterError(str("SLURM_STEP_NUM_TASKS=", e.slurm_step_tasks, ": expected a task count (1 or more)"));
  }
  if (tasks <= 1) return;
  throw ClusterError(str(
      "srun started this process as task ", e.slurm_procid, " of ", tasks, " (SLURM_PROCID, SLURM_STEP_NUM_TASKS) ",
      e.pmi_rank.empty()
          ? std::string("without an MPI plugin (no PMIX_RANK in the environment)")
          : std::string("with the PMI-2 plugin (PMI_RANK is set; Debian's OpenMPI 4.1 speaks only PMIx)"),
      ", so MPI cannot join the tasks into one job: each would run alone as world size 1. Launch with "
      "srun --mpi=pmix (srun --mpi=list shows the plugins; MpiDefault=pmix in slurm.conf makes it the default), "
      "or with mpirun inside the allocation"));
}

std::string LaunchEnvironment::describe() const {
  std::string out = "launcher " + launcher;
  if (launcher == "mpirun") {
    out += str(" (OMPI_COMM_WORLD rank ", rank, " of ", ompi_world_size, ", local rank ", ompi_local_rank, " of ",
               ompi_local_size, ")");
  }
  if (!slurm_job_id.empty()) {
    out += str(", slurm job ", slurm_job_id, " procid ", slurm_procid, " localid ", slurm_localid,
               " nodes ", slurm_nodelist);
  }
  return out;
}

ProcessRuntime::ProcessRuntime() = default;

std::unique_ptr<ProcessRuntime> ProcessRuntime::start(int* argc, char*** argv, const RuntimeOptions& options) {
  if (options.threads < 0 || options.threads > kMaxThreads) {
    throw InputError("--threads", "",
                     str(options.threads, ", expected 0 (the CPUs' share) or a count up to ", kMaxThreads));
  }
  std::unique_ptr<ProcessRuntime> runtime(new ProcessRuntime());
  runtime->environment_ = read_launch_environment();
  check_launch_environment(runtime->environment_);
  // Read here, not only where MPI starts: a plain process must refuse the typo a job would.
  requested_mpi_thread_level();
  runtime->hostname_ = host_name();
  runtime->shutdown_limit_ =
      options.shutdown_stall_limit.count() > 0 ? options.shutdown_stall_limit : options.stall_limit;
  const std::vector<int> cpus = launch_cpus();  // as the launcher bound this process
  const std::vector<int> main_thread = allowed_cpus();  // narrower where an OpenMP runtime bound it
  std::vector<std::vector<int>> local_cpus{cpus}, main_threads{main_thread};
  if (options.force_mpi || runtime->environment_.launcher != "none") {
    runtime->start_mpi(argc, argv, options.stall_limit, cpus, main_thread, &local_cpus, &main_threads);
  }
  runtime->cpu_binding_warning_ = main_threads_sharing_cpus(local_cpus, main_threads, openmp_binding_variables());
  if (!runtime->cpu_binding_warning_.empty() && runtime->local_rank_ == 0) {
    LOG(WARNING) << "on " << runtime->hostname_ << ": " << runtime->cpu_binding_warning_;
  }
  runtime->local_cpus_ = std::move(local_cpus);
  runtime->main_thread_cpus_ = main_thread;
  runtime->set_thread_count(options.threads);
  return runtime;
}

// MPI_Init_thread on the MPI thread, then this rank's place in the world and on its node, and
// the node's CPU masks (`local_cpus`, `main_threads`: every local rank's `cpus` and `main_thread`).
void ProcessRuntime::start_mpi(int* argc, char*** argv, std::chrono::milliseconds stall_limit,
                               const std::vector<int>& cpus, const std::vector<int>& main_thread,
                               std::vector<std::vector<int>>* local_cpus,
                               std::vector<std::vector<int>>* main_threads) {
  const int required = requested_mpi_thread_level();
  mpi_thread_ = std::make_unique<MpiThread>();
  PhaseWatchdog watchdog("MPI start-up", stall_limit, who(), WatchdogEnd::kExitProcess);
  // The thread that initialises MPI is the one that may call it under MPI_THREAD_FUNNELED.
  int provided = MPI_THREAD_SINGLE;
  mpi_thread_->run([&] {
    watchdog.at("MPI_Init_thread");
    mpi_check(MPI_Init_thread(argc, argv, required, &provided), "MPI_Init_thread", who());
    mpi_ = true;  // initialised: the destructor finalises
    mpi_check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler", who());
    if (provided < MPI_THREAD_FUNNELED) {
      MPI_Finalize();
      mpi_ = false;  // finalised: the destructor must not again
      throw ClusterError(str("the MPI library provides thread level ", mpi_thread_level_name(provided),
                             " (asked for ", mpi_thread_level_name(required), "); cmaformer needs at least "
                             "MPI_THREAD_FUNNELED (its MPI calls run on one thread, not the main one)"));
    }
  });
  thread_level_ = provided;
  mpi_thread_->started(provided);
  try {
    mpi_thread_->run([&] {
      mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank", who());
      mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size", who());
      watchdog.at("MPI_Comm_split_type");
      MpiComm node;  // freed also when a check below throws
      mpi_check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, node.receive()),
                "MPI_Comm_split_type", who());
      mpi_check(MPI_Comm_rank(node, &local_rank_), "MPI_Comm_rank(node)", who());
      mpi_check(MPI_Comm_size(node, &local_size_), "MPI_Comm_size(node)", who());
      watchdog.at("the node's CPU masks (MPI_Allgather)");
      *local_cpus = gather_allowed_cpus(node, cpus, who());
      *main_threads = gather_allowed_cpus(node, main_thread, who());
    });
  } catch (const std::exception& error) {
    // MPI is up: the destructor meets the other ranks before MPI_Finalize, and they may be
    // waiting in the call that failed here. Say why now (the caller's report may come after
    // the job is gone), and let the shut-down wait only the failed rank's grace.
    LOG(ERROR) << "MPI start-up failed on " << who() << ": " << error.what();
    google::FlushLogFiles(google::GLOG_INFO);
    PhaseWatchdog::rank_failed(1);
    throw;
  }
  if (size_ > 1) set_error_prefix(str("[rank ", rank_, "] "));
}

// LibTorch's threads: `requested`, or this rank's share of its CPUs (its affinity mask shared
// with the local ranks overlapping it, capped by a cgroup CPU quota) when 0.
void ProcessRuntime::set_thread_count(int requested) {
  const int mask_share = default_thread_count(local_cpus_, local_rank_);
  const double quota = cgroup_cpu_limit();
  const int quota_share = quota_thread_count(quota, local_size_);
  const int share = quota_share > 0 ? std::min(mask_share, quota_share) : mask_share;
  if (share < mask_share && requested == 0 && local_rank_ == 0) {
    LOG(INFO) << "on " << hostname_ << ": a CPU quota of " << quota << " CPUs (cgroup) for " << local_size_
              << " local rank(s): " << share << " LibTorch thread(s) a rank, not the " << mask_share
              << " its affinity mask would give";
  }
  threads_ = requested > 0 ? requested : share;
  if (threads_ > share) {
    LOG(WARNING) << "rank " << rank_ << " on " << hostname_ << " uses " << threads_
                 << " LibTorch threads, but its share of the CPUs it may run on is " << share << " ("
                 << allowed_cpu_count() << " CPU(s) in its affinity mask, shared with the "
                 << "local ranks that overlap it"
                 << (share < mask_share ? str("; a cgroup CPU quota of ", quota, " CPUs for ", local_size_,
                                              " local rank(s)")
                                        : std::string())
                 << "): the threads will wait for each other. "
                 << oversubscription_hint(environment_.launcher, threads_);
  }
  at::set_num_threads(threads_);
}

ProcessRuntime::~ProcessRuntime() {
  if (!mpi_) return;  // also when MPI_Init_thread failed: its thread goes with the member
  if (size_ > 1) {
    // The ranks meet here before MPI_Finalize, which waits for all of them too but from inside
    // which no watchdog may call MPI_Abort. A rank that failed (its error printed) waits only
    // the grace: peers that did not stop with it are waiting for it in a collective, and the
    // watchdog ends the whole job with its status at once, under srun as under mpirun. Each
    // call is handed over on its own (mpi_call), so that where calls are funnelled the MPI
    // thread is free between them for the watchdog's MPI_Abort.
    PhaseWatchdog watchdog("MPI shut-down", shutdown_limit_, who(), WatchdogEnd::kAbortJob);
    watchdog.at("MPI_Ibarrier before MPI_Finalize");
    MPI_Request request = MPI_REQUEST_NULL;
    int done = 0;
    // A destructor cannot throw: a failed call is logged, and shut-down goes on to MPI_Finalize.
    int code = mpi_call([&] { return MPI_Ibarrier(MPI_COMM_WORLD, &request); });
    const char* call = "MPI_Ibarrier";
    while (code == MPI_SUCCESS && !done) {
      code = mpi_call([&] { return MPI_Test(&request, &done, MPI_STATUS_IGNORE); });
      call = "MPI_Test(MPI_Ibarrier)";
      if (code == MPI_SUCCESS && !done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (code != MPI_SUCCESS) {
      LOG(WARNING) << call << " before MPI_Finalize failed on " << who() << ": " << mpi_error_text(code);
    }
  }
  PhaseWatchdog watchdog("MPI shut-down", shutdown_limit_, who(), WatchdogEnd::kExitProcess);
  watchdog.at("MPI_Finalize");
  try {
    // The thread that initialised MPI finalises it.
    mpi_thread_->run([this] {
      mpi_thread_->finished();
      const int code = MPI_Finalize();
      if (code != MPI_SUCCESS) LOG(WARNING) << "MPI_Finalize failed on " << who() << ": " << mpi_error_text(code);
    });
  } catch (const std::exception& error) {  // a destructor cannot throw
    LOG(WARNING) << "MPI shut-down on " << who() << ": " << error.what();
  }
}

std::string ProcessRuntime::who() const {
  // Before MPI_Init the launcher's rank, after it MPI's (the same number).
  const std::string rank = mpi_ && size_ > 1 ? std::to_string(rank_) : environment_.rank;
  return str(rank.empty() ? str("process ", ::getpid()) : "rank " + rank, " on ", hostname_);
}

std::unique_ptr<Communicator> ProcessRuntime::world_communicator(std::chrono::milliseconds stall_limit,
                                                                 bool node_shared_memory) const {
  if (mpi_) {
    StallOptions stall;
    if (stall_limit.count() > 0) stall.limit = stall_limit;
    return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, stall, node_shared_memory);
  }
  return std::make_unique<LocalCommunicator>();
}

std::string ProcessRuntime::describe() const {
  return str("rank ", rank_, "/", size_, " (local ", local_rank_, "/", local_size_, ") on ", hostname_,
             ", ", threads_, " LibTorch thread(s) on ", allowed_cpu_count(), " allowed CPU(s)",
             main_thread_cpus_.size() < static_cast<size_t>(allowed_cpu_count())
                 ? str(" (the main thread bound to CPU(s) ", cpu_ranges(main_thread_cpus_), " by the OpenMP runtime)")
                 : std::string(),
             ", ",
             environment_.describe(),
             mpi_ ? str(", MPI (thread level ", mpi_thread_level_name(thread_level_),
                        thread_level_ < MPI_THREAD_MULTIPLE ? ": every MPI call on one thread)" : ")")
                  : std::string(", no MPI"));
}

}  // namespace cmaf::cluster
