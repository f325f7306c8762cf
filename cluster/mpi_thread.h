// Where the process calls MPI from.
//
// ProcessRuntime initialises MPI on a thread of its own, the MPI thread, which also finalises it
// (it is MPI's "main thread"). With MPI_THREAD_MULTIPLE every thread calls MPI directly, and the
// MPI thread only waits for shut-down. With a lower level, MPI_THREAD_FUNNELED (only the thread
// that initialised MPI may call it) or MPI_THREAD_SERIALIZED (one thread at a time), every MPI
// call of the process is funnelled through the MPI thread: mpi_run() hands it a block of calls
// and waits for it, so the communicators' threads, the heartbeat threads and the main thread
// never call MPI themselves.
//
// A blocking collective on the MPI thread would shut out every other caller until it ends: a
// heartbeat could not be sent, and two communicators whose collectives the ranks happen to issue
// in different orders would deadlock. So the collectives go through mpi_allreduce() and its
// siblings: MPI's blocking call with MPI_THREAD_MULTIPLE (2-3x faster here than the
// non-blocking ones), and funnelled, the non-blocking call started and completed on the MPI
// thread (mpi_start_and_wait(): one hand-over), which tests every outstanding request between
// the blocks handed to it. New communicators likewise (mpi_comm_dup() and the splits). Code
// inside an mpi_run() block runs on the MPI thread and calls MPI directly; the helpers below
// called there run at once, and a blocking wait there holds the thread: such blocks are MPI's
// start-up (nothing else uses MPI yet), MPI_Finalize and calls that return at once.
//
// Every user of MPI (communicators, their threads) must be gone before ProcessRuntime finalises
// MPI and its MPI thread ends: the functions below read the funnel without a lifetime guard.
//
// CMAF_MPI_THREAD_LEVEL=multiple|serialized|funneled asks MPI for that level (default multiple):
// for an MPI library whose MPI_THREAD_MULTIPLE is missing, slow or broken, and for the tests of
// the funnel.
#pragma once

#include <mpi.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "cluster/comm_thread.h"

namespace cmaf::cluster {

// The level CMAF_MPI_THREAD_LEVEL asks for (MPI_THREAD_MULTIPLE when unset); throws ClusterError
// naming the variable, its value and the accepted ones.
int requested_mpi_thread_level();
// "multiple", "serialized", "funneled", "single".
std::string mpi_thread_level_name(int level);

int mpi_start_and_wait(const std::function<int(MPI_Request*)>& start);
[[noreturn]] void mpi_abort(int status);

// The MPI thread (ProcessRuntime owns it): runs blocks handed to it, one at a time in order, and
// completes the requests of mpi_start_and_wait().
class MpiThread {
 public:
  MpiThread();
  ~MpiThread();  // MPI must be finalised (or never initialised) by then
  MpiThread(const MpiThread&) = delete;
  MpiThread& operator=(const MpiThread&) = delete;

  // Runs `block` on the thread and waits; its exception is rethrown here.
  void run(const std::function<void()>& block);
  // After MPI_Init_thread gave `provided`: below MPI_THREAD_MULTIPLE, every MPI call of the
  // process goes through this thread from now on.
  void started(int provided);
  // On the thread, right before MPI_Finalize: nothing is funnelled any more, and a request still
  // waited for fails (MPI_ERR_OTHER).
  void finished();
  // Whether the caller is the MPI thread.
  bool is_current() const { return thread_.is_current(); }

 private:
  friend int mpi_start_and_wait(const std::function<int(MPI_Request*)>& start);
  friend void mpi_abort(int status);
  // One hand-over: on the thread, `start` starts the call that fills *request, and
  // the request joins those the thread tests; returns when it is complete (MPI's error code).
  int complete(MPI_Request* request, std::function<int(MPI_Request*)> start);
  struct Wait {
    MPI_Request* request;
    std::shared_ptr<std::promise<int>> done;
  };
  bool test_waits();  // on the thread: completes what it can; whether any is left
  std::vector<Wait> waits_;  // the thread's own
  CommThread thread_;
};

// MPI's thread level while MPI is up (ProcessRuntime's MpiThread::started), -1 otherwise.
int mpi_thread_level();
// Whether MPI calls go through the MPI thread (MPI is up below MPI_THREAD_MULTIPLE).
bool mpi_funnelled();

// Runs `block`, which calls MPI, where MPI may be called: here, unless funnelled from another
// thread than the MPI thread; then on the MPI thread, waiting for it (its exception is rethrown).
void mpi_run(const std::function<void()>& block);
// One call through mpi_run(); returns its MPI error code.
int mpi_call(const std::function<int()>& call);
// `start` (a non-blocking call that fills the request it is given), then MPI_Wait of it;
// funnelled, both in one hand-over to the MPI thread, which tests the request among the other
// outstanding ones.
int mpi_start_and_wait(const std::function<int(MPI_Request*)>& start);

// Blocking collectives that never hold the MPI thread (see above); MPI's error code.
int mpi_allreduce(const void* send, void* receive, int count, MPI_Datatype type, MPI_Op op, MPI_Comm comm);
int mpi_bcast(void* buffer, int count, MPI_Datatype type, int root, MPI_Comm comm);
int mpi_allgather(const void* send, int send_count, MPI_Datatype send_type, void* receive, int receive_count,
                  MPI_Datatype receive_type, MPI_Comm comm);
int mpi_barrier(MPI_Comm comm);
// New communicators. MPI_Comm_dup; funnelled, MPI_Comm_idup, waited for off the MPI thread.
int mpi_comm_dup(MPI_Comm comm, MPI_Comm* out);
// MPI_Comm_split and MPI_Comm_split_type have no non-blocking form; funnelled, an MPI_Ibarrier
// over `comm` goes first, so that the MPI thread is held in the split only once every rank has
// arrived.
int mpi_comm_split(MPI_Comm comm, int color, int key, MPI_Comm* out);
int mpi_comm_split_type(MPI_Comm comm, int type, int key, MPI_Info info, MPI_Comm* out);

// Ends the whole job with `status` (MPI_Abort of MPI_COMM_WORLD). Funnelled, the MPI thread
// makes the call if it takes it within 2 s; it may be held in a blocking call (a peer that
// dies inside a communicator split, after the barrier before it). Then, and when MPI is not up,
// this process exits with `status` and the launcher ends the others (mpirun at once; under srun
// each waiting rank's own watchdog ends it). Whatever else hangs (MPI_Abort itself, a flush to a
// hung file system), the process exits with `status` after kAbortDeadline (exit_after).
[[noreturn]] void mpi_abort(int status);

// The longest that ending the job may take once decided: logging, flushing, MPI_Abort.
inline constexpr std::chrono::seconds kAbortDeadline{20};

// A detached thread that _exits the process with `status` after `delay`, whatever the other
// threads are blocked in (glog's mutex, a write to a hung NFS or Lustre mount, PMIx). Called
// first on every path that ends the job for a stall; never throws.
void exit_after(std::chrono::milliseconds delay, int status) noexcept;

}  // namespace cmaf::cluster
