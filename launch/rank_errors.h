// How an error ends a command: its message and exit status, alone and on one rank of a job.
//
// Exit statuses: 0 done, 1 an error (cmaf::Error), 2 a usage error, 3 an internal error
// (another exception).
//
// In a job of several ranks an error is often one rank's: its share of the cases holds the bad
// file, only rank 0 reads the checkpoint named by --resume or writes one. Its peers then wait
// for it in a collective. Unwinding that rank's communicators would make it wait for them in
// their shut-down (a collective) until the stall limit ended the job with status 75, and the
// message, printed only after the unwinding, was never printed. So the part of a command that
// talks to other ranks runs through run_on_this_rank(), with the communicators declared outside
// it: the error is printed first, then the shut-down waits only a short grace for the peers
// (they may be failing the same way) and otherwise ends the job with the error's status
// (cluster/phase_watchdog.h).
#pragma once

#include <exception>
#include <functional>

namespace cmaf::launch {

// Prints `error` to stderr ("error: ...", "usage error: ...", "internal error (please report):
// ...") and returns the exit status it calls for.
int print_error(const std::exception_ptr& error);

// work()'s status; an exception is printed (print_error), marks this rank as failed
// (PhaseWatchdog::rank_failed) and gives its status.
int run_on_this_rank(const std::function<int()>& work);

}  // namespace cmaf::launch
