#include "core/stop_request.h"

#include <signal.h>

#include <atomic>

#include "cluster/phase_watchdog.h"

namespace cmaf::core {
namespace {

std::atomic<int> first_signal{0};

void on_signal(int signal_number) {
  int expected = 0;
  first_signal.compare_exchange_strong(expected, signal_number);  // async-signal-safe (lock-free)
  // SIGTERM: the job ends within KillWait; the stall watchdogs stop waiting for silent ranks.
  // SIGUSR1 leaves time (a preemption warning, or none at all when sent by hand): not noted.
  if (signal_number == SIGTERM) cluster::note_ending_signal(signal_number);
}

}  // namespace

void install_stop_handlers() {
  static_assert(std::atomic<int>::is_always_lock_free, "the handler must not take a lock");
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

bool stop_requested() { return first_signal.load() != 0; }
int stop_signal() { return first_signal.load(); }
void clear_stop_request() {
  first_signal.store(0);
  cluster::clear_ending_signal();
}

}  // namespace cmaf::core
