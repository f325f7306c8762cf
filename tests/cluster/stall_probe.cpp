// A small MPI job for the stall tests (tests/cluster/stall_test.sh):
//   stall_probe sleep RANK SECONDS   rank RANK sleeps before the third all-reduce
//   stall_probe kill RANK            rank RANK kills itself with SIGKILL before it
// Stall limit 3 s, heartbeat every 200 ms. Expected: the job exits non-zero within seconds, and
// for `sleep` the live ranks log which rank has not arrived.
#include <ATen/ATen.h>
#include <glog/logging.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "cluster/mpi_communicator.h"
#include "cluster/process_runtime.h"

int main(int argc, char** argv) {
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  if (argc < 3) return 2;
  const std::string mode = argv[1];
  const int victim = std::atoi(argv[2]);
  const int seconds = argc > 3 ? std::atoi(argv[3]) : 0;
  cmaf::cluster::RuntimeOptions options;
  options.force_mpi = true;
  options.threads = 1;
  auto runtime = cmaf::cluster::ProcessRuntime::start(&argc, &argv, options);
  cmaf::cluster::StallOptions stall;
  stall.limit = std::chrono::seconds(3);
  stall.heartbeat_period = std::chrono::milliseconds(200);
  {
    cmaf::cluster::MpiCommunicator world(MPI_COMM_WORLD, stall);
    for (int step = 0; step < 5; ++step) {
      if (step == 2 && world.rank() == victim) {
        if (mode == "kill") ::kill(::getpid(), SIGKILL);
        std::this_thread::sleep_for(std::chrono::seconds(seconds));
      }
      at::Tensor t = at::ones({1024});
      world.all_reduce(t, cmaf::cluster::ReduceOp::kSum);
    }
  }
  runtime.reset();
  return 0;
}
