#include "launch/rank_errors.h"

#include <iostream>
#include <string>

#include "cluster/phase_watchdog.h"
#include "common/error.h"

namespace cmaf::launch {

int print_error(const std::exception_ptr& error) {
  // One write per message: the ranks of a job share the terminal, and a line written in pieces
  // can be cut by another rank's.
  std::string line;
  int status = 0;
  try {
    std::rethrow_exception(error);
  } catch (const UsageError& e) {
    line = str("usage error: ", e.what(), "\n");
    status = 2;
  } catch (const Error& e) {
    line = str("error: ", e.what(), "\n");
    status = 1;
  } catch (const std::exception& e) {
    line = str("internal error (please report): ", e.what(), "\n");
    status = 3;
  }
  std::cerr.write(line.data(), static_cast<std::streamsize>(line.size()));
  std::cerr.flush();
  return status;
}

int run_on_this_rank(const std::function<int()>& work) {
  int status = 0;
  try {
    status = work();
  } catch (const std::exception&) {
    status = print_error(std::current_exception());
    cluster::PhaseWatchdog::rank_failed(status);
  }
  // What the work printed is out before the shut-down phases, whose watchdogs end the process
  // without flushing it.
  std::cout.flush();
  return status;
}

}  // namespace cmaf::launch
