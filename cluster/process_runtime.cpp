#include "cluster/process_runtime.h"

#include <ATen/Parallel.h>
#include <mpi.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "cluster/cluster_error.h"
#include "cluster/local_communicator.h"
#include "cluster/mpi_communicator.h"
#include "cluster/mpi_handle.h"

namespace cmaf::cluster {
namespace {

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

void mpi_check(int code, const char* call) {
  if (code != MPI_SUCCESS) throw ClusterError(str(call, " failed: ", mpi_error_text(code)));
}

}  // namespace

std::string host_name() {
  char buffer[256] = {0};
  ::gethostname(buffer, sizeof(buffer) - 1);
  return buffer;
}

LaunchEnvironment read_launch_environment() {
  LaunchEnvironment e;
  if (!env("SLURM_STEP_ID").empty() && !env("PMIX_RANK").empty()) {
    e.launcher = "srun";
  } else if (!env("OMPI_COMM_WORLD_SIZE").empty()) {
    e.launcher = "mpirun";
  }
  e.slurm_job_id = env("SLURM_JOB_ID");
  e.slurm_procid = env("SLURM_PROCID");
  e.slurm_localid = env("SLURM_LOCALID");
  e.slurm_nodelist = env("SLURM_JOB_NODELIST");
  return e;
}

std::string LaunchEnvironment::describe() const {
  std::string out = "launcher " + launcher;
  if (!slurm_job_id.empty()) {
    out += str(", slurm job ", slurm_job_id, " procid ", slurm_procid, " localid ", slurm_localid,
               " nodes ", slurm_nodelist);
  }
  return out;
}

std::unique_ptr<ProcessRuntime> ProcessRuntime::start(int* argc, char*** argv, const RuntimeOptions& options) {
  std::unique_ptr<ProcessRuntime> runtime(new ProcessRuntime());
  runtime->environment_ = read_launch_environment();
  runtime->hostname_ = host_name();
  runtime->mpi_ = options.force_mpi || runtime->environment_.launcher != "none";
  if (runtime->mpi_) {
    int provided = MPI_THREAD_SINGLE;
    mpi_check(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (provided < MPI_THREAD_SERIALIZED) {
      MPI_Finalize();
      throw ClusterError(str("the MPI library provides thread level ", provided,
                             "; cmaformer needs at least MPI_THREAD_SERIALIZED (all MPI calls run "
                             "on one communication thread, not the main one)"));
    }
    mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &runtime->rank_), "MPI_Comm_rank");
    mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &runtime->size_), "MPI_Comm_size");
    MpiComm node;  // freed also when a check below throws
    mpi_check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, runtime->rank_, MPI_INFO_NULL,
                                  node.receive()),
              "MPI_Comm_split_type");
    mpi_check(MPI_Comm_rank(node, &runtime->local_rank_), "MPI_Comm_rank(node)");
    mpi_check(MPI_Comm_size(node, &runtime->local_size_), "MPI_Comm_size(node)");
    node.reset();
    if (runtime->size_ > 1) set_error_prefix(str("[rank ", runtime->rank_, "] "));
  }
  const int hardware = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  runtime->threads_ = options.threads > 0 ? options.threads : std::max(1, hardware / runtime->local_size_);
  at::set_num_threads(runtime->threads_);
  return runtime;
}

ProcessRuntime::~ProcessRuntime() {
  if (mpi_) MPI_Finalize();
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
             ", ", threads_, " LibTorch thread(s), ", environment_.describe(),
             mpi_ ? ", MPI" : ", no MPI");
}

}  // namespace cmaf::cluster
