// A small MPI job for the stall tests (tests/cluster/stall_test.sh):
//   stall_probe sleep RANK SECONDS   rank RANK sleeps before the third all-reduce
//   stall_probe kill RANK            rank RANK kills itself with SIGKILL before it
//   stall_probe freeze RANK          rank RANK stops its whole node before it: SIGSTOP to the
//                                    ranks with its host name, to its parent (the node's
//                                    slurmstepd under srun, its orted under local_nodes.sh) and
//                                    to itself, as a node that hangs with its connections open
//   stall_probe suspend RANK SECONDS rank RANK stops every rank of the job (SIGSTOP, itself last)
//                                    for SECONDS, longer than the stall limit, as a suspended
//                                    Slurm job; a child process it forked resumes them (SIGCONT).
//                                    Expected: the job finishes (exit 0), the pause forgiven
//   stall_probe busy RANK SECONDS    rank RANK sleeps before the third all-reduce as work of its
//                                    own (begin_local_work): the others wait past the 3 s stall limit
//                                    up to the 10 s busy limit. Expected: for SECONDS below it
//                                    the job finishes (exit 0); above it, a stall (exit 75)
//   stall_probe channel RANK SECONDS rank RANK sleeps before the third collective on a second
//                                    heartbeat channel (MpiCommunicator::new_heartbeat_monitor),
//                                    driven as the NCCL backend drives it: entered() and left()
//                                    around a wait the channel knows nothing of (a raw
//                                    MPI_Barrier here, the CUDA stream there); its stall limit
//                                    4 s. Expected as `sleep`
//   stall_probe busy-arrive RANK SECONDS  on a second channel as `channel` (its limit 6 s), rank
//                                    RANK is busy (begin_local_work) for SECONDS before the third
//                                    collective (past the limit, or just within it), then enters
//                                    it and takes 2 s more to complete it (a slow network after a
//                                    late arrival). Expected: the others wait for it as busy, then
//                                    give the collective the stall limit again from its arrival:
//                                    the job finishes (exit 0)
//   stall_probe busy-arrive-stall RANK SECONDS  as busy-arrive, but the collective never completes:
//                                    rank RANK enters it and sleeps. Expected: the others report
//                                    a stall one limit after they last saw it busy (its own limit
//                                    is 12 s, so that the report is theirs), exit 75
//   stall_probe busy-stop RANK SECONDS  as busy-arrive, but rank RANK stops itself (SIGSTOP) at
//                                    the end of its work instead of arriving. Expected: the others
//                                    report it silent at once, exit 75
//   stall_probe stop RANK            rank RANK stops itself (SIGSTOP) before the third
//                                    all-reduce: its heartbeats stop too. Expected: the others
//                                    report it silent (or, heartbeats gathered and RANK 0, that
//                                    rank 0 does not answer) and end the job with status 75
//   stall_probe term RANK            as `stop`, with a stall limit of 40 s; the other ranks then
//                                    get SIGTERM (as srun --kill-on-bad-exit=1 sends it when a
//                                    task dies), which their handler notes (note_ending_signal).
//                                    Expected: they report the silent rank and end the job with
//                                    status 75 within seconds, not at the 40 s limit
//   stall_probe term-alive RANK SECONDS  as `term`, but rank RANK sleeps SECONDS instead, its
//                                    heartbeats going on. Expected: it is waited for, the job
//                                    finishes (exit 0)
//   stall_probe late-start RANK SECONDS         rank RANK sleeps before MPI_Init
//   stall_probe late-communicator RANK SECONDS  ... before the communicator's set-up
//   stall_probe late-finish RANK SECONDS        ... before MPI_Finalize
// Stall limit 3 s (MPI start-up and shut-down: 60 s but in their late modes), heartbeat every
// 200 ms. Expected: the job exits non-zero within seconds, for
// `sleep` the live ranks log which rank has not arrived, and for the late modes they log the
// phase and the MPI call they waited in (cluster/phase_watchdog.h).
#include <ATen/ATen.h>
#include <glog/logging.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cluster/mpi_communicator.h"
#include "cluster/mpi_thread.h"
#include "cluster/phase_watchdog.h"
#include "cluster/process_runtime.h"

namespace {
void note_signal(int signal) { cmaf::cluster::note_ending_signal(signal); }
}  // namespace

int main(int argc, char** argv) {
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  if (argc < 3) return 2;
  const std::string mode = argv[1];
  const int victim = std::atoi(argv[2]);
  const int seconds = argc > 3 ? std::atoi(argv[3]) : 0;
  // Before MPI_Init only the launcher knows the rank.
  const std::string rank = cmaf::cluster::read_launch_environment().rank;
  const bool late = rank == std::to_string(victim);
  const auto pause = [&](const char* late_mode) {
    if (late && mode == late_mode) std::this_thread::sleep_for(std::chrono::seconds(seconds));
  };
  pause("late-start");
  cmaf::cluster::RuntimeOptions options;
  options.force_mpi = true;
  options.threads = 1;
  // 3 s only where a late rank is the test, and only for that phase: elsewhere a rank of a loaded
  // machine may well reach MPI_Init or MPI_Finalize a few seconds after another.
  options.stall_limit = std::chrono::seconds(mode == "late-start" ? 3 : 60);
  options.shutdown_stall_limit = std::chrono::seconds(mode == "late-finish" ? 3 : 60);
  auto runtime = cmaf::cluster::ProcessRuntime::start(&argc, &argv, options);
  if (runtime->rank() == 0) LOG(INFO) << "stall_probe: " << runtime->describe();  // the thread level, for the test
  cmaf::cluster::StallOptions stall;
  const bool term = mode == "term" || mode == "term-alive";
  stall.limit = std::chrono::seconds(term ? 40 : 3);
  if (term) {  // the trainer's handler (core/stop_request.cpp) notes the signal the same way
    struct sigaction action {};
    action.sa_handler = note_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &action, nullptr);
  }
  stall.heartbeat_period = std::chrono::milliseconds(200);
  stall.busy_limit = std::chrono::seconds(10);
  // STALL_PROBE_GATHERED=1: the heartbeats through rank 0, as above 64 ranks.
  const char* gathered = std::getenv("STALL_PROBE_GATHERED");
  if (gathered != nullptr && std::string(gathered) == "1") stall.all_to_all_ranks = 1;
  pause("late-communicator");
  {
    cmaf::cluster::MpiCommunicator world(MPI_COMM_WORLD, stall);
    // Every rank's host name and process id, for the freeze.
    struct Peer {
      std::array<char, 256> host{};
      int64_t pid = 0;
    } mine;
    std::strncpy(mine.host.data(), cmaf::cluster::host_name().c_str(), mine.host.size() - 1);
    mine.pid = ::getpid();
    std::vector<Peer> peers(static_cast<size_t>(world.size()));
    cmaf::cluster::mpi_allgather(&mine, sizeof(Peer), MPI_BYTE, peers.data(), sizeof(Peer), MPI_BYTE,
                                 MPI_COMM_WORLD);
    if (mode == "freeze" && std::strcmp(peers[0].host.data(), peers[static_cast<size_t>(victim)].host.data()) == 0) {
      LOG(ERROR) << "freeze: rank " << victim << " shares rank 0's node; run under local_nodes.sh with them apart";
      return 2;  // its parent would be mpirun or rank 0's daemon
    }
    const bool busy = mode.rfind("busy-", 0) == 0;  // busy-arrive, busy-arrive-stall, busy-stop
    const bool told = mode == "channel-told";
    const bool on_channel = mode == "channel" || told || busy;
    if (on_channel) {
      // A limit of its own, as the NCCL backend passes the trainer's --stall-seconds: 4 s (in
      // channel-told 5 s but on rank 0, so that the others are told of the stall 1 s before they
      // would find it, and 1 s before rank 0's abort), and for the busy modes 6 s (so that the
      // others' first table, gathered, comes 2 s before rank RANK's arrival in busy-arrive 5 s),
      // 12 s for rank RANK in busy-arrive-stall.
      const bool victim_here = world.rank() == victim;
      const int limit = !busy ? (told && world.rank() != 0 ? 5 : 4)
                        : mode == "busy-arrive-stall" && victim_here ? 12 : 6;
      const std::unique_ptr<cmaf::cluster::HeartbeatMonitor> channel =
          world.new_heartbeat_monitor(std::chrono::seconds(limit));
      for (int64_t collective = 1; collective <= 5; ++collective) {
        const bool slow = collective == 3 && victim_here;
        if (slow && busy) channel->begin_local_work("a long job of its own (stall_probe " + mode + ")");
        if (slow) std::this_thread::sleep_for(std::chrono::seconds(seconds));
        if (slow && mode == "busy-stop") ::raise(SIGSTOP);  // heartbeats and all, until the job is killed
        channel->entered(collective, "ncclAllReduce (stall_probe channel)", 4096);
        if (slow && busy) {  // arrived, the others still waiting
          std::this_thread::sleep_for(std::chrono::seconds(mode == "busy-arrive" ? 2 : 60));
        }
        cmaf::cluster::mpi_barrier(MPI_COMM_WORLD);
        channel->left();
      }
    }
    bool continue_after_pause = false;
    for (int step = 0; step < 5 && !on_channel; ++step) {
      if (step == 2 && world.rank() == victim && mode.rfind("late-", 0) != 0) {
        if (mode == "kill") ::kill(::getpid(), SIGKILL);
        if (mode == "busy") {
          world.begin_local_work("a long job of its own (stall_probe busy)");
          std::this_thread::sleep_for(std::chrono::seconds(seconds));
          continue_after_pause = true;
        }
        if (mode == "suspend") {
          std::vector<pid_t> job;
          for (const Peer& peer : peers) job.push_back(static_cast<pid_t>(peer.pid));
          if (::fork() == 0) {  // the resumer: async-signal-safe calls only
            ::sleep(static_cast<unsigned>(seconds));
            for (pid_t pid : job) ::kill(pid, SIGCONT);
            ::_exit(0);
          }
          for (pid_t pid : job) {
            if (pid != ::getpid()) ::kill(pid, SIGSTOP);
          }
          ::raise(SIGSTOP);
          continue_after_pause = true;
        }
        if (mode == "stop" || mode == "term") ::raise(SIGSTOP);  // heartbeat thread and all, until the job is killed
        if (mode == "freeze") {
          for (const Peer& peer : peers) {
            if (peer.pid != mine.pid && std::strcmp(peer.host.data(), mine.host.data()) == 0) {
              ::kill(static_cast<pid_t>(peer.pid), SIGSTOP);
            }
          }
          ::kill(::getppid(), SIGSTOP);
          ::raise(SIGSTOP);
        }
        if (!continue_after_pause) std::this_thread::sleep_for(std::chrono::seconds(seconds));
      }
      if (step == 2 && term && world.rank() != victim) {  // the victim stops or sleeps meanwhile
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        ::raise(SIGTERM);
      }
      at::Tensor t = at::ones({1024});
      world.all_reduce(t, cmaf::cluster::ReduceOp::kSum);
    }
  }
  pause("late-finish");
  runtime.reset();
  return 0;
}
