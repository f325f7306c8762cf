// Fault injection for the multi-rank tests: a pause that an environment variable asks for at a
// known place (rank 0 between a checkpoint's files, each validation slice, each evaluated case),
// so that a test can make one rank slower than its peers there, or signal a rank mid-save.
// Unset or empty: no pause.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <thread>

namespace cmaf {

// Sleeps `times` x the milliseconds in environment variable `variable`.
inline void test_delay(const char* variable, int64_t times = 1) {
  const char* ms = std::getenv(variable);
  if (ms == nullptr || *ms == '\0' || times <= 0) return;
  std::this_thread::sleep_for(std::chrono::milliseconds(std::atoll(ms) * times));
}

}  // namespace cmaf
