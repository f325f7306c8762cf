// Real multi-process tests: run by ctest under `mpirun -np 2` and `-np 3 --oversubscribe`.
// Every rank runs every test; the job's exit status is the worst rank's. The program carries the
// MPI audit (mpi_thread_audit.h): under CMAF_MPI_THREAD_LEVEL=funneled or serialized, one MPI call
// off the MPI thread fails the job too.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <string>

#include "cluster/mpi_thread.h"
#include "cluster/process_runtime.h"
#include "tests/cluster/mpi_thread_audit.h"
#include "tests/cluster/mpi_world.h"

namespace cmaf::test {
namespace {
std::unique_ptr<cluster::Communicator>* world_slot() {
  static std::unique_ptr<cluster::Communicator> world;
  return &world;
}
}  // namespace

cluster::Communicator& mpi_world() { return **world_slot(); }

namespace {
const cluster::ProcessRuntime** runtime_slot() {
  static const cluster::ProcessRuntime* runtime = nullptr;
  return &runtime;
}
}  // namespace

const cluster::ProcessRuntime& mpi_runtime() { return **runtime_slot(); }

namespace {
// The other ranks' report: only their failures, each naming the rank and the test, so a check
// that fails on rank 2 alone is not hidden behind rank 0's "PASSED".
class FailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  // The name is kept here: UnitTest::current_test_info() would take the lock that gtest holds
  // while it reports a result.
  void OnTestStart(const testing::TestInfo& test) override {
    test_ = std::string(test.test_suite_name()) + "." + test.name();
  }
  void OnTestPartResult(const testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s failed at %s:%d\n%s\n", rank_, test_.c_str(),
                 result.file_name() ? result.file_name() : "?", result.line_number(), result.message());
    std::fflush(stderr);
  }

 private:
  int rank_;
  std::string test_;
};
}  // namespace

}  // namespace cmaf::test

int main(int argc, char** argv) {
  cmaf::cluster::RuntimeOptions options;
  options.force_mpi = true;
  options.threads = 1;
  auto runtime = cmaf::cluster::ProcessRuntime::start(&argc, &argv, options);
  *cmaf::test::world_slot() = runtime->world_communicator();
  *cmaf::test::runtime_slot() = runtime.get();
  testing::InitGoogleTest(&argc, argv);
  if (runtime->rank() != 0) {  // one rank prints the report, the others their failures
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new cmaf::test::FailurePrinter(runtime->rank()));  // the listener list owns it
  }
  int failed = RUN_ALL_TESTS();
  int any_failed = 0;
  cmaf::cluster::mpi_allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  cmaf::test::world_slot()->reset();
  runtime.reset();
  // Below MPI_THREAD_MULTIPLE, an MPI call off the MPI thread anywhere in the run (the shut-down
  // included) fails the job; the audit printed which function.
  const int64_t violations = cmaf::test::mpi_audit_violations();
  if (violations > 0) std::fprintf(stderr, "MPI audit: %lld call(s) off the MPI thread\n", static_cast<long long>(violations));
  return any_failed != 0 || violations > 0 ? 1 : 0;
}
