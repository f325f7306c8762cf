// Owners of MPI communicators and reduction ops. A raw handle member is freed only by its
// owner's destructor, which does not run when the owner's constructor throws half-way (for
// example on CMAF_SIMULATED_RANKS_PER_NODE differing between ranks): each such failure kept its
// communicators, and a process that survives the error (a test, a retry) kept them all. An
// owner member is freed whenever it goes, constructor or not.
#pragma once

#include <mpi.h>

#include <utility>

#include "cluster/mpi_thread.h"

namespace cmaf::cluster {

template <typename Traits>
class MpiHandle {
 public:
  using Handle = typename Traits::Handle;

  MpiHandle() = default;
  ~MpiHandle() { reset(); }
  MpiHandle(const MpiHandle&) = delete;
  MpiHandle& operator=(const MpiHandle&) = delete;
  MpiHandle(MpiHandle&& other) noexcept : handle_(std::exchange(other.handle_, Traits::null())) {}
  MpiHandle& operator=(MpiHandle&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = std::exchange(other.handle_, Traits::null());
    }
    return *this;
  }

  // The handle, for the MPI calls that use it.
  operator Handle() const { return handle_; }  // NOLINT(google-explicit-constructor)
  // Where an MPI call that creates a handle writes it (what was held is freed first).
  Handle* receive() {
    reset();
    return &handle_;
  }
  // Frees what is held (nothing when null), on the MPI thread where calls are funnelled; MPI's
  // error code.
  int reset() {
    return handle_ == Traits::null() ? MPI_SUCCESS : mpi_call([this] { return Traits::free(&handle_); });
  }

 private:
  Handle handle_ = Traits::null();
};

struct MpiCommTraits {
  using Handle = MPI_Comm;
  static Handle null() { return MPI_COMM_NULL; }
  static int free(Handle* handle) { return MPI_Comm_free(handle); }
};
struct MpiOpTraits {
  using Handle = MPI_Op;
  static Handle null() { return MPI_OP_NULL; }
  static int free(Handle* handle) { return MPI_Op_free(handle); }
};

using MpiComm = MpiHandle<MpiCommTraits>;
using MpiOp = MpiHandle<MpiOpTraits>;

}  // namespace cmaf::cluster
