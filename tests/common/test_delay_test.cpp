#include "common/test_delay.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <string>

namespace cmaf {
namespace {

// The fault-injection variables take milliseconds, 0 to 600000, or nothing; anything else is an
// error naming the variable and the value, not a silent 0 (atoll) or a pause of 292 million years.
TEST(TestDelay, TakesMillisecondsAndRefusesAnythingElseByName) {
  const char* variable = "CMAF_EVAL_CASE_DELAY_MS";
  const char* before = std::getenv(variable);
  const std::string kept = before == nullptr ? "" : before;
  unsetenv(variable);
  EXPECT_EQ(test_delay_ms(variable), 0);
  setenv(variable, "", 1);
  EXPECT_EQ(test_delay_ms(variable), 0);
  setenv(variable, "250", 1);
  EXPECT_EQ(test_delay_ms(variable), 250);
  EXPECT_NO_THROW(check_test_delays());
  setenv(variable, "20", 1);
  const auto start = std::chrono::steady_clock::now();
  test_delay(variable, 2);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(40));
  for (const std::string bad : {"abc", "4x", "-1", " 5", "600001", "99999999999999999999"}) {
    setenv(variable, bad.c_str(), 1);
    try {
      check_test_delays();
      FAIL() << variable << "=" << bad << " accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("environment variable ") + variable), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("'" + bad + "', expected milliseconds, 0 to 600000"), std::string::npos)
          << e.what();
    }
  }
  if (before == nullptr) {
    unsetenv(variable);
  } else {
    setenv(variable, kept.c_str(), 1);
  }
}

}  // namespace
}  // namespace cmaf
