// A PMPI audit of where MPI is called from, linked into the MPI test programs: every MPI function
// the project uses is wrapped (the program's own definition takes the place of the library's
// and calls the PMPI one), and below MPI_THREAD_MULTIPLE each call made by another thread than
// the one that called MPI_Init_thread is a violation, printed to stderr once per function.
#pragma once

#include <cstdint>
#include <string>

namespace cmaf::test {
// Calls made from a thread that may not call MPI (always 0 with MPI_THREAD_MULTIPLE).
int64_t mpi_audit_violations();
// Calls of MPI_`name` so far ("Allreduce", "Iallreduce", ...).
int64_t mpi_audit_calls(const std::string& name);
// Whether the calling thread may call MPI at this level.
bool mpi_audit_allowed_here();
}  // namespace cmaf::test
