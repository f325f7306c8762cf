// Fault injection for the multi-rank tests: a pause that an environment variable asks for at a
// known place (rank 0 between a checkpoint's files, each validation slice, each evaluated case),
// so that a test can make one rank slower than its peers there, or signal a rank mid-save.
// Unset or empty: no pause. Anything but 0 to 600000 (milliseconds) is an error, found by
// check_test_delays() at start-up rather than mid-save.
#pragma once

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>

#include "common/error.h"

namespace cmaf {

inline constexpr const char* kTestDelayVariables[] = {"CMAF_CHECKPOINT_SAVE_DELAY_MS",
                                                      "CMAF_VALIDATION_SLICE_DELAY_MS", "CMAF_EVAL_CASE_DELAY_MS"};
inline constexpr int64_t kMaxTestDelayMs = 600000;

// The milliseconds in environment variable `variable`: 0 when unset or empty.
inline int64_t test_delay_ms(const char* variable) {
  const char* ms = std::getenv(variable);
  if (ms == nullptr || *ms == '\0') return 0;
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(ms, &end, 10);
  const bool digits = std::isdigit(static_cast<unsigned char>(*ms)) != 0 && *end == '\0';  // no sign, no blank
  if (!digits || errno == ERANGE || value > kMaxTestDelayMs) {
    throw InputError(str("environment variable ", variable), "",
                     str("'", ms, "', expected milliseconds, 0 to ", kMaxTestDelayMs, " (or unset)"));
  }
  return value;
}

// Throws InputError for any of kTestDelayVariables set to something else than a delay.
inline void check_test_delays() {
  for (const char* variable : kTestDelayVariables) test_delay_ms(variable);
}

// Sleeps `times` x the milliseconds in environment variable `variable`.
inline void test_delay(const char* variable, int64_t times = 1) {
  const int64_t ms = test_delay_ms(variable);
  if (ms == 0 || times <= 0) return;
  std::this_thread::sleep_for(std::chrono::milliseconds(ms * times));
}

}  // namespace cmaf
