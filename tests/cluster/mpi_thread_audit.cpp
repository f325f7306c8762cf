#include "tests/cluster/mpi_thread_audit.h"

#include <mpi.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace cmaf::test {
namespace {
std::atomic<int> level{-1};  // the level MPI provided; -1 before MPI_Init_thread returns
std::thread::id init_thread;
std::atomic<int64_t> violations{0};
std::mutex mutex;
std::map<std::string, int64_t> calls;
std::set<std::string> reported;

void audit(const char* name) {
  const bool allowed = mpi_audit_allowed_here();
  std::lock_guard<std::mutex> lock(mutex);
  ++calls[name];
  if (allowed) return;
  ++violations;
  if (reported.insert(name).second) {
    std::fprintf(stderr, "MPI audit: MPI_%s called off the MPI thread at thread level %d\n", name, level.load());
    std::fflush(stderr);
  }
}
}  // namespace

int64_t mpi_audit_violations() { return violations.load(); }

int64_t mpi_audit_calls(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex);
  const auto found = calls.find(name);
  return found == calls.end() ? 0 : found->second;
}

bool mpi_audit_allowed_here() {
  const int provided = level.load();
  return provided < 0 || provided == MPI_THREAD_MULTIPLE || std::this_thread::get_id() == init_thread;
}

}  // namespace cmaf::test

using cmaf::test::audit;

extern "C" {

int MPI_Init_thread(int* argc, char*** argv, int required, int* provided) {
  cmaf::test::init_thread = std::this_thread::get_id();
  const int code = PMPI_Init_thread(argc, argv, required, provided);
  if (code == MPI_SUCCESS) cmaf::test::level.store(*provided);
  return code;
}

#define CMAF_AUDITED(name, parameters, arguments) \
  int MPI_##name parameters {                     \
    audit(#name);                                 \
    return PMPI_##name arguments;                 \
  }

CMAF_AUDITED(Finalize, (void), ())
CMAF_AUDITED(Abort, (MPI_Comm comm, int code), (comm, code))
CMAF_AUDITED(Allgather, (const void* s, int sc, MPI_Datatype st, void* r, int rc, MPI_Datatype rt, MPI_Comm c),
             (s, sc, st, r, rc, rt, c))
CMAF_AUDITED(Iallgather,
             (const void* s, int sc, MPI_Datatype st, void* r, int rc, MPI_Datatype rt, MPI_Comm c, MPI_Request* q),
             (s, sc, st, r, rc, rt, c, q))
CMAF_AUDITED(Allreduce, (const void* s, void* r, int n, MPI_Datatype t, MPI_Op o, MPI_Comm c), (s, r, n, t, o, c))
CMAF_AUDITED(Iallreduce, (const void* s, void* r, int n, MPI_Datatype t, MPI_Op o, MPI_Comm c, MPI_Request* q),
             (s, r, n, t, o, c, q))
CMAF_AUDITED(Barrier, (MPI_Comm c), (c))
CMAF_AUDITED(Ibarrier, (MPI_Comm c, MPI_Request* q), (c, q))
CMAF_AUDITED(Bcast, (void* b, int n, MPI_Datatype t, int root, MPI_Comm c), (b, n, t, root, c))
CMAF_AUDITED(Ibcast, (void* b, int n, MPI_Datatype t, int root, MPI_Comm c, MPI_Request* q), (b, n, t, root, c, q))
CMAF_AUDITED(Cancel, (MPI_Request* q), (q))
CMAF_AUDITED(Comm_dup, (MPI_Comm c, MPI_Comm* out), (c, out))
CMAF_AUDITED(Comm_idup, (MPI_Comm c, MPI_Comm* out, MPI_Request* q), (c, out, q))
CMAF_AUDITED(Comm_free, (MPI_Comm* c), (c))
CMAF_AUDITED(Comm_rank, (MPI_Comm c, int* rank), (c, rank))
CMAF_AUDITED(Comm_size, (MPI_Comm c, int* size), (c, size))
CMAF_AUDITED(Comm_set_errhandler, (MPI_Comm c, MPI_Errhandler e), (c, e))
CMAF_AUDITED(Comm_split, (MPI_Comm c, int color, int key, MPI_Comm* out), (c, color, key, out))
CMAF_AUDITED(Comm_split_type, (MPI_Comm c, int type, int key, MPI_Info info, MPI_Comm* out),
             (c, type, key, info, out))
CMAF_AUDITED(Error_string, (int code, char* text, int* length), (code, text, length))
CMAF_AUDITED(Get_count, (const MPI_Status* status, MPI_Datatype t, int* count), (status, t, count))
CMAF_AUDITED(Iprobe, (int source, int tag, MPI_Comm c, int* flag, MPI_Status* status), (source, tag, c, flag, status))
CMAF_AUDITED(Irecv, (void* b, int n, MPI_Datatype t, int source, int tag, MPI_Comm c, MPI_Request* q),
             (b, n, t, source, tag, c, q))
CMAF_AUDITED(Isend, (const void* b, int n, MPI_Datatype t, int dest, int tag, MPI_Comm c, MPI_Request* q),
             (b, n, t, dest, tag, c, q))
CMAF_AUDITED(Recv, (void* b, int n, MPI_Datatype t, int source, int tag, MPI_Comm c, MPI_Status* status),
             (b, n, t, source, tag, c, status))
CMAF_AUDITED(Op_create, (MPI_User_function* f, int commute, MPI_Op* op), (f, commute, op))
CMAF_AUDITED(Op_free, (MPI_Op* op), (op))
CMAF_AUDITED(Query_thread, (int* provided), (provided))
CMAF_AUDITED(Request_free, (MPI_Request* q), (q))
CMAF_AUDITED(Test, (MPI_Request* q, int* flag, MPI_Status* status), (q, flag, status))
CMAF_AUDITED(Wait, (MPI_Request* q, MPI_Status* status), (q, status))

}  // extern "C"
