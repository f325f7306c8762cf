#include "cluster/process_runtime.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <sched.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <utility>
#include <thread>
#include <vector>

#include "cluster/cluster_error.h"
#include "cluster/cpu_quota.h"
#include "cluster/mpi_thread.h"
#include "tests/temp_dir.h"

namespace cmaf::cluster {
namespace {

std::vector<int> cpu_range(int first, int count) {
  std::vector<int> cpus(static_cast<size_t>(count));
  std::iota(cpus.begin(), cpus.end(), first);
  return cpus;
}

TEST(DefaultThreadCount, UnboundRanksSplitTheNodesCores) {
  // mpirun --bind-to none on a 64-core node: every rank sees all 64.
  const std::vector<std::vector<int>> cpus(4, cpu_range(0, 64));
  for (int r = 0; r < 4; ++r) EXPECT_EQ(default_thread_count(cpus, r), 16);
  EXPECT_EQ(default_thread_count({cpu_range(0, 64)}, 0), 64);  // a lone process
}

// Writes `text` to `root`/`relative`, making the folders.
void write_file(const std::string& root, const std::string& relative, const std::string& text) {
  const std::filesystem::path path = std::filesystem::path(root) / relative;
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << text << "\n";
}

TEST(CgroupCpuLimit, Version2TakesTheSmallestQuotaOnThePathUp) {
  test::TempDir root;
  EXPECT_EQ(cgroup_cpu_limit("0::/a/b\n", root.path()), 0.0);  // no files: no quota
  write_file(root.path(), "a/b/cpu.max", "max 100000");             // no quota here
  write_file(root.path(), "a/cpu.max", "250000 100000");            // 2.5 CPUs above it
  EXPECT_DOUBLE_EQ(cgroup_cpu_limit("0::/a/b\n", root.path()), 2.5);
  write_file(root.path(), "cpu.max", "400000 100000");              // the top: looser
  EXPECT_DOUBLE_EQ(cgroup_cpu_limit("0::/a/b\n", root.path()), 2.5);
  write_file(root.path(), "a/b/cpu.max", "50000 100000");           // tighter below
  EXPECT_DOUBLE_EQ(cgroup_cpu_limit("0::/a/b\n", root.path()), 0.5);
  // A container: its cgroup's path is the host's, above the namespace's root; the top's counts.
  EXPECT_DOUBLE_EQ(cgroup_cpu_limit("0::/system.slice/docker-1.scope\n", root.path()), 4.0);
  write_file(root.path(), "c/cpu.max", "garbage");                    // unreadable: no quota
  EXPECT_DOUBLE_EQ(cgroup_cpu_limit("0::/c\n", root.path()), 4.0);
}

TEST(CgroupCpuLimit, Version1ReadsTheCpuHierarchy) {
  test::TempDir root;
  const std::string self = "9:name=systemd:/job\n4:memory:/job\n2:cpu,cpuacct:/job\n0::/\n";
  write_file(root.path(), "cpu,cpuacct/job/cpu.cfs_quota_us", "-1");
  write_file(root.path(), "cpu,cpuacct/job/cpu.cfs_period_us", "100000");
  EXPECT_EQ(cgroup_cpu_limit(self, root.path()), 0.0);
  write_file(root.path(), "cpu,cpuacct/cpu.cfs_quota_us", "150000");
  write_file(root.path(), "cpu,cpuacct/cpu.cfs_period_us", "100000");
  EXPECT_DOUBLE_EQ(cgroup_cpu_limit(self, root.path()), 1.5);
  write_file(root.path(), "cpu,cpuacct/job/cpu.cfs_quota_us", "300000");  // looser below: the top's holds
  EXPECT_DOUBLE_EQ(cgroup_cpu_limit(self, root.path()), 1.5);
  // The memory hierarchy's quota-like files are not the CPU's.
  write_file(root.path(), "memory/job/cpu.cfs_quota_us", "50000");
  write_file(root.path(), "memory/job/cpu.cfs_period_us", "100000");
  EXPECT_EQ(cgroup_cpu_limit("4:memory:/job\n", root.path()), 0.0);
  // Only a root/cpu mount: found there.
  test::TempDir only_cpu;
  write_file(only_cpu.path(), "cpu/cpu.cfs_quota_us", "200000");
  write_file(only_cpu.path(), "cpu/cpu.cfs_period_us", "100000");
  EXPECT_DOUBLE_EQ(cgroup_cpu_limit("2:cpuacct,cpu:/\n", only_cpu.path()), 2.0);
}

TEST(CgroupCpuLimit, AQuotaIsSharedByTheNodesRanks) {
  EXPECT_EQ(quota_thread_count(0.0, 2), 0);  // no quota: no cap
  EXPECT_EQ(quota_thread_count(4.0, 2), 2);  // docker --cpus=4, 2 ranks
  EXPECT_EQ(quota_thread_count(2.5, 2), 1);
  EXPECT_EQ(quota_thread_count(1.5, 4), 1);  // at least one
  EXPECT_EQ(quota_thread_count(16.0, 1), 16);
}

TEST(DefaultThreadCount, BoundRanksUseTheirOwnCores) {
  // srun --cpus-per-task=4 on a node shared with other jobs: 2 tasks, 4 cores each.
  const std::vector<std::vector<int>> cpus{cpu_range(8, 4), cpu_range(12, 4)};
  EXPECT_EQ(default_thread_count(cpus, 0), 4);
  EXPECT_EQ(default_thread_count(cpus, 1), 4);
  // mpirun's default for 2 ranks: one core each.
  EXPECT_EQ(default_thread_count({{0}, {1}}, 1), 1);
}

TEST(DefaultThreadCount, ConfinedProcessCountsOnlyItsCores) {
  // taskset -c 2,3 (or a cgroup of 2 cores) on a 64-core machine.
  EXPECT_EQ(default_thread_count({{2, 3}}, 0), 2);
  // 3 ranks confined together to 2 cores: oversubscribed, still one thread each.
  const std::vector<std::vector<int>> cpus(3, std::vector<int>{0, 1});
  for (int r = 0; r < 3; ++r) EXPECT_EQ(default_thread_count(cpus, r), 1);
}

TEST(DefaultThreadCount, PartlyOverlappingRanksShareWhatOverlaps) {
  // Rank 1 overlaps both neighbours; ranks 0 and 2 only rank 1.
  const std::vector<std::vector<int>> cpus{cpu_range(0, 6), cpu_range(4, 6), cpu_range(8, 6)};
  EXPECT_EQ(default_thread_count(cpus, 0), 3);
  EXPECT_EQ(default_thread_count(cpus, 1), 2);
  EXPECT_EQ(default_thread_count(cpus, 2), 3);
  EXPECT_THROW(default_thread_count(cpus, 3), std::exception);
}

// Restores the calling thread's CPU mask and LibTorch's thread count, also when a check fails.
class AffinityGuard {
 public:
  AffinityGuard() : threads_(at::get_num_threads()) {
    saved_ = sched_getaffinity(0, sizeof(mask_), &mask_) == 0;
  }
  ~AffinityGuard() {
    if (saved_) sched_setaffinity(0, sizeof(mask_), &mask_);
    at::set_num_threads(threads_);
  }
  AffinityGuard(const AffinityGuard&) = delete;
  AffinityGuard& operator=(const AffinityGuard&) = delete;
  bool saved() const { return saved_; }

 private:
  cpu_set_t mask_{};
  bool saved_ = false;
  int threads_;
};

// The calling thread's mask restricted to one CPU: allowed_cpus() and the runtime's default see
// one CPU, not the machine's.
TEST(ProcessRuntimeThreads, DefaultFollowsTheAffinityMask) {
  if (read_launch_environment().launcher != "none") {
    GTEST_SKIP() << "a launcher started this test: ProcessRuntime::start would initialise MPI";
  }
  const std::vector<int> all = allowed_cpus();
  ASSERT_FALSE(all.empty());
  if (all.size() < 2) GTEST_SKIP() << "needs 2 allowed CPUs to tell the mask from the machine";
  if (all.back() >= CPU_SETSIZE) GTEST_SKIP() << "CPU " << all.back() << " does not fit a cpu_set_t";
  AffinityGuard guard;
  ASSERT_TRUE(guard.saved());
  {
    auto runtime = ProcessRuntime::start(nullptr, nullptr);
    EXPECT_FALSE(runtime->uses_mpi());
    EXPECT_EQ(runtime->allowed_cpu_count(), static_cast<int>(all.size()));
    EXPECT_EQ(runtime->threads(), static_cast<int>(all.size()));
  }
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(all.back(), &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  EXPECT_EQ(allowed_cpus(), std::vector<int>{all.back()});
  auto runtime = ProcessRuntime::start(nullptr, nullptr);
  EXPECT_EQ(runtime->allowed_cpu_count(), 1);
  EXPECT_EQ(runtime->threads(), 1);
  // More threads than that: allowed, with a warning in the log.
  RuntimeOptions two;
  two.threads = 2;
  EXPECT_EQ(ProcessRuntime::start(nullptr, nullptr, two)->threads(), 2);
}

// Run by the ctest cluster_openmp_bound_main_thread under OMP_PROC_BIND=true, where libgomp binds
// the main thread to one CPU as it loads, with CMAF_EXPECT_LAUNCH_CPUS the CPUs the shell had:
// the runtime still counts those. In the rest of the suite (no OpenMP binding) the launcher's
// CPUs are the main thread's.
TEST(ProcessRuntimeThreads, AnOpenMpBoundMainThreadStillCountsTheLaunchersCpus) {
  if (read_launch_environment().launcher != "none") {
    GTEST_SKIP() << "a launcher started this test: ProcessRuntime::start would initialise MPI";
  }
  const char* expected = std::getenv("CMAF_EXPECT_LAUNCH_CPUS");
  AffinityGuard guard;
  auto runtime = ProcessRuntime::start(nullptr, nullptr);
  EXPECT_TRUE(runtime->cpu_binding_warning().empty()) << "a lone process shares its CPUs with no rank";
  if (expected == nullptr) {
    if (!openmp_binding_variables().empty()) return;  // run by hand with binding set: nothing known to expect
    EXPECT_EQ(launch_cpus(), allowed_cpus());
    EXPECT_EQ(runtime->main_thread_cpus(), allowed_cpus());
    EXPECT_EQ(runtime->threads(), static_cast<int>(allowed_cpus().size()));
    return;
  }
  const int launched = std::atoi(expected);
  ASSERT_GE(launched, 2) << "the ctest runs this with 2 CPUs or more";
  ASSERT_EQ(allowed_cpus().size(), 1U) << "the OpenMP runtime did not bind the main thread ("
                                       << openmp_binding_variables() << ")";
  EXPECT_EQ(static_cast<int>(launch_cpus().size()), launched);
  EXPECT_EQ(runtime->allowed_cpu_count(), launched);
  EXPECT_EQ(runtime->threads(), launched);  // was 1: the main thread's single CPU
  EXPECT_EQ(runtime->main_thread_cpus(), allowed_cpus());
  const std::string line = runtime->describe();
  EXPECT_NE(line.find("main thread bound to CPU(s) " + std::to_string(allowed_cpus().front()) + " by the OpenMP"),
            std::string::npos)
      << line;
}

std::vector<std::vector<int>> repeated(size_t ranks, const std::vector<int>& cpus) {
  return std::vector<std::vector<int>>(ranks, cpus);
}

TEST(MainThreadsSharingCpus, UnboundRanksWhoseMainThreadsOpenMpPutOnOneCpu) {
  // mpirun --bind-to none on 4 CPUs, OMP_PROC_BIND=true: every main thread on CPU 0.
  const std::string warning = main_threads_sharing_cpus(repeated(2, cpu_range(0, 4)), repeated(2, {0}),
                                                        "OMP_PROC_BIND=true");
  EXPECT_NE(warning.find("(OMP_PROC_BIND=true)"), std::string::npos) << warning;
  EXPECT_NE(warning.find("local ranks 0 and 1 are on the same CPU(s) 0,"), std::string::npos) << warning;
  EXPECT_NE(warning.find("while no main thread runs on CPU(s) 1-3 that the launcher gave them"), std::string::npos)
      << warning;
  EXPECT_NE(warning.find("--bind-to core"), std::string::npos) << warning;
  EXPECT_NE(warning.find("--cpu-bind=cores"), std::string::npos) << warning;
  // Many ranks: three pairs named, and the count.
  const std::string many = main_threads_sharing_cpus(repeated(5, cpu_range(0, 8)), repeated(5, {0}), "");
  EXPECT_NE(many.find("local ranks 0 and 1, 0 and 2, 0 and 3 (10 pairs in all)"), std::string::npos) << many;
  EXPECT_NE(many.find("(told to bind threads)"), std::string::npos) << many;
  // Two of three collide, on CPUs the launcher gave them all; the third's place is its own.
  const std::string some = main_threads_sharing_cpus(repeated(3, cpu_range(0, 8)), {{4, 5}, {2}, {4}}, "OMP_PLACES=x");
  EXPECT_NE(some.find("local ranks 0 and 2 are on the same CPU(s) 4,"), std::string::npos) << some;
  EXPECT_NE(some.find("runs on CPU(s) 0-1,3,6-7 that"), std::string::npos) << some;
  EXPECT_EQ(some.find("0 and 1"), std::string::npos) << some;
}

TEST(MainThreadsSharingCpus, NothingToSayWhereNoMainThreadsCollide) {
  // srun --cpus-per-task=4 --cpu-bind=cores with OMP_PLACES=cores: each main thread on the first
  // core of its own four (the intended set-up).
  EXPECT_EQ(main_threads_sharing_cpus({cpu_range(0, 4), cpu_range(4, 4)}, {{0}, {4}}, "OMP_PLACES=cores"), "");
  // No OpenMP binding: the main threads hold what the launcher gave, shared or not.
  EXPECT_EQ(main_threads_sharing_cpus(repeated(3, cpu_range(0, 2)), repeated(3, cpu_range(0, 2)), ""), "");
  // Ranks the launcher itself put on one CPU (mpirun --oversubscribe on a 1-CPU cpuset).
  EXPECT_EQ(main_threads_sharing_cpus(repeated(2, {3}), repeated(2, {3}), "OMP_PROC_BIND=true"), "");
  EXPECT_EQ(main_threads_sharing_cpus({cpu_range(0, 2)}, {{0}}, "OMP_PROC_BIND=true"), "");  // a lone rank
  EXPECT_THROW(main_threads_sharing_cpus(repeated(2, {0}), repeated(3, {0}), ""), std::exception);
}

// srun without an MPI plugin: every task would run alone, so start-up refuses it by name.
TEST(LaunchEnvironmentTest, SrunWithoutPmixIsRefused) {
  LaunchEnvironment e;  // what srun -n 2 --mpi=none gives task 1
  e.slurm_job_id = "42";
  e.slurm_procid = "1";
  e.slurm_step_tasks = "2";
  try {
    check_launch_environment(e);
    FAIL() << "srun's 2 tasks without PMIx were accepted";
  } catch (const ClusterError& error) {
    const std::string what = error.what();
    EXPECT_NE(what.find("task 1 of 2"), std::string::npos) << what;
    EXPECT_NE(what.find("no PMIX_RANK"), std::string::npos) << what;
    EXPECT_NE(what.find("srun --mpi=pmix"), std::string::npos) << what;
  }
  e.pmi_rank = "1";  // srun --mpi=pmi2
  try {
    check_launch_environment(e);
    FAIL() << "srun's 2 tasks with PMI-2 were accepted";
  } catch (const ClusterError& error) {
    EXPECT_NE(std::string(error.what()).find("PMI-2"), std::string::npos) << error.what();
  }
  // Accepted: one task, srun with PMIx, mpirun inside an allocation, no Slurm at all.
  LaunchEnvironment one = e;
  one.slurm_step_tasks = "1";
  EXPECT_NO_THROW(check_launch_environment(one));
  LaunchEnvironment pmix = e;
  pmix.launcher = "srun";
  EXPECT_NO_THROW(check_launch_environment(pmix));
  LaunchEnvironment mpirun = e;
  mpirun.launcher = "mpirun";
  EXPECT_NO_THROW(check_launch_environment(mpirun));
  EXPECT_NO_THROW(check_launch_environment(LaunchEnvironment{}));
}

// mpirun inside a Slurm step: its ranks also see SLURM_STEP_ID and PMIX_RANK (from ORTE's PMIx
// server), and are still mpirun's; srun's own tasks have no OMPI_COMM_WORLD_* before MPI_Init.
TEST(LaunchEnvironmentTest, MpirunInsideASlurmStepIsMpirun) {
  const std::vector<std::string> names{"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "SLURM_STEP_ID", "PMIX_RANK"};
  std::vector<std::pair<bool, std::string>> saved;
  for (const std::string& name : names) {
    const char* value = std::getenv(name.c_str());
    saved.emplace_back(value != nullptr, value != nullptr ? value : "");
  }
  setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
  setenv("OMPI_COMM_WORLD_RANK", "3", 1);
  setenv("SLURM_STEP_ID", "0", 1);
  setenv("PMIX_RANK", "3", 1);
  const LaunchEnvironment inside = read_launch_environment();
  unsetenv("OMPI_COMM_WORLD_SIZE");
  unsetenv("OMPI_COMM_WORLD_RANK");
  const LaunchEnvironment srun = read_launch_environment();
  for (size_t k = 0; k < names.size(); ++k) {
    if (saved[k].first) {
      setenv(names[k].c_str(), saved[k].second.c_str(), 1);
    } else {
      unsetenv(names[k].c_str());
    }
  }
  EXPECT_EQ(inside.launcher, "mpirun");
  EXPECT_EQ(inside.rank, "3");
  EXPECT_EQ(srun.launcher, "srun");
  EXPECT_EQ(srun.rank, "3");
}

// A task count that is not a positive number, and a thread count below 0 or above kMaxThreads, are
// errors naming them.
TEST(LaunchEnvironmentTest, MalformedValuesAreRefusedByName) {
  LaunchEnvironment e;
  e.slurm_procid = "0";
  for (const std::string tasks : {"2x", "-4", "0", "99999999999999999999"}) {
    e.slurm_step_tasks = tasks;
    try {
      check_launch_environment(e);
      FAIL() << "SLURM_STEP_NUM_TASKS=" << tasks << " accepted";
    } catch (const ClusterError& error) {
      EXPECT_NE(std::string(error.what()).find("SLURM_STEP_NUM_TASKS=" + tasks + ": expected a task count"),
                std::string::npos)
          << error.what();
    }
  }
  e.slurm_step_tasks = "1";
  EXPECT_NO_THROW(check_launch_environment(e));
  for (const int threads : {-5, kMaxThreads + 1, 2000000000}) {
    RuntimeOptions bad;
    bad.threads = threads;
    try {
      ProcessRuntime::start(nullptr, nullptr, bad);
      FAIL() << "--threads " << threads << " accepted";
    } catch (const InputError& error) {
      EXPECT_NE(std::string(error.what()).find("--threads"), std::string::npos) << error.what();
      EXPECT_NE(std::string(error.what()).find(std::to_string(threads)), std::string::npos) << error.what();
    }
  }
}

// CMAF_MPI_THREAD_LEVEL: the level ProcessRuntime asks MPI for; anything else is refused by name.
TEST(MpiThreadLevel, TheEnvironmentPicksTheLevel) {
  const char* before = std::getenv("CMAF_MPI_THREAD_LEVEL");
  const std::string kept = before == nullptr ? "" : before;
  unsetenv("CMAF_MPI_THREAD_LEVEL");
  EXPECT_EQ(requested_mpi_thread_level(), MPI_THREAD_MULTIPLE);
  const std::pair<const char*, int> levels[] = {
      {"multiple", MPI_THREAD_MULTIPLE}, {"serialized", MPI_THREAD_SERIALIZED}, {"funneled", MPI_THREAD_FUNNELED}};
  for (const auto& [name, level] : levels) {
    setenv("CMAF_MPI_THREAD_LEVEL", name, 1);
    EXPECT_EQ(requested_mpi_thread_level(), level) << name;
    EXPECT_EQ(mpi_thread_level_name(level), name);
  }
  for (const char* wrong : {"MULTIPLE", "single", "2", "funnelled"}) {
    setenv("CMAF_MPI_THREAD_LEVEL", wrong, 1);
    try {
      requested_mpi_thread_level();
      ADD_FAILURE() << wrong << " was accepted";
    } catch (const ClusterError& error) {
      EXPECT_NE(std::string(error.what()).find(std::string("CMAF_MPI_THREAD_LEVEL=") + wrong + ": expected multiple, "
                                               "serialized or funneled"),
                std::string::npos)
          << error.what();
    }
  }
  // A plain process (no launcher, no MPI) refuses it too, as the same job on two ranks would.
  setenv("CMAF_MPI_THREAD_LEVEL", "funnelled", 1);
  EXPECT_THROW(ProcessRuntime::start(nullptr, nullptr, RuntimeOptions{}), ClusterError);
  if (before == nullptr) {
    unsetenv("CMAF_MPI_THREAD_LEVEL");
  } else {
    setenv("CMAF_MPI_THREAD_LEVEL", kept.c_str(), 1);
  }
  // Without MPI nothing is funnelled and no level is in use.
  EXPECT_FALSE(mpi_funnelled());
  EXPECT_EQ(mpi_thread_level(), -1);
}

TEST(LaunchEnvironmentTest, DescribeNamesTheLaunchersRanks) {
  LaunchEnvironment e;
  e.launcher = "mpirun";
  e.rank = "2";
  e.ompi_world_size = "3";
  e.ompi_local_rank = "0";
  e.ompi_local_size = "1";
  EXPECT_EQ(e.describe(), "launcher mpirun (OMPI_COMM_WORLD rank 2 of 3, local rank 0 of 1)");
  LaunchEnvironment s;
  s.launcher = "srun";
  s.slurm_job_id = "7";
  s.slurm_procid = "3";
  s.slurm_localid = "1";
  s.slurm_nodelist = "node[1-2]";
  EXPECT_EQ(s.describe(), "launcher srun, slurm job 7 procid 3 localid 1 nodes node[1-2]");
}

}  // namespace
}  // namespace cmaf::cluster
