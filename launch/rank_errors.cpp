#include "launch/rank_errors.h"

#include <iostream>

#include "cluster/phase_watchdog.h"
#include "common/error.h"

namespace cmaf::launch {

int print_error(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const UsageError& e) {
    std::cerr << "usage error: " << e.what() << "\n";
    return 2;
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "internal error (please report): " << e.what() << "\n";
    return 3;
  }
}

int run_on_this_rank(const std::function<int()>& work) {
  try {
    return work();
  } catch (const std::exception&) {
    const int status = print_error(std::current_exception());
    cluster::PhaseWatchdog::rank_failed(status);
    return status;
  }
}

}  // namespace cmaf::launch
