// Real multi-process tests: run by ctest under `mpirun -np 2` and `-np 3 --oversubscribe`.
// Every rank runs every test; the job's exit status is the worst rank's.
#include <gtest/gtest.h>
#include <mpi.h>

#include "cluster/process_runtime.h"
#include "tests/cluster/mpi_world.h"

namespace cmaf::test {
namespace {
std::unique_ptr<cluster::Communicator>* world_slot() {
  static std::unique_ptr<cluster::Communicator> world;
  return &world;
}
}  // namespace

cluster::Communicator& mpi_world() { return **world_slot(); }

}  // namespace cmaf::test

int main(int argc, char** argv) {
  cmaf::cluster::RuntimeOptions options;
  options.force_mpi = true;
  options.threads = 1;
  auto runtime = cmaf::cluster::ProcessRuntime::start(&argc, &argv, options);
  *cmaf::test::world_slot() = runtime->world_communicator();
  testing::InitGoogleTest(&argc, argv);
  if (runtime->rank() != 0) {  // one rank prints the report; failures still fail the job
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS();
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  cmaf::test::world_slot()->reset();
  runtime.reset();
  return any_failed;
}
