#include "core/progress_line.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>

namespace cmaf::core {
namespace {

using Clock = ProgressLine::Clock;
using std::chrono::seconds;

TEST(ProgressLine, IntoAFileAtMostOneLinePerQuietPeriodPlusFirstAndLast) {
  std::ostringstream out;
  ProgressLine line(out, /*terminal=*/false, /*quiet_seconds=*/30.0);
  const Clock::time_point t0{};
  line.update(10, 100, "a", t0);               // first: printed
  line.update(20, 100, "b", t0 + seconds(10));  // 10 s later: quiet
  line.update(30, 100, "c", t0 + seconds(29));  // still quiet
  line.update(40, 100, "d", t0 + seconds(31));  // 31 s after "a": printed
  line.update(50, 100, "e", t0 + seconds(40));  // 9 s after "d": quiet
  line.update(100, 100, "z", t0 + seconds(41));  // the last step: always printed
  line.finish();                                 // nothing open: no extra newline
  EXPECT_EQ(out.str(), "a\nd\nz\n");
}

TEST(ProgressLine, OnATerminalRewritesOneLineAndEndsIt) {
  std::ostringstream out;
  ProgressLine line(out, /*terminal=*/true);
  const Clock::time_point t0{};
  line.update(10, 100, "step 10", t0);
  line.update(20, 100, "step 20", t0);
  EXPECT_EQ(out.str(), "\rstep 10\033[K\rstep 20\033[K");  // every update, no newline yet
  line.finish();
  line.finish();  // idempotent
  EXPECT_EQ(out.str(), "\rstep 10\033[K\rstep 20\033[K\n");
  line.update(100, 100, "step 100", t0);  // the last step ends its line by itself
  EXPECT_EQ(out.str().substr(out.str().size() - 13), "\rstep 100\033[K\n");
}

TEST(ProgressLine, UnderMpirunStdoutCountsAsAFile) {
  // mpirun gives its ranks a pseudo-terminal even when its own output goes to a file.
  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
  EXPECT_FALSE(ProgressLine::for_stdout().terminal());
  unsetenv("OMPI_COMM_WORLD_SIZE");
}

TEST(ProgressLine, DurationsReadLikeEtas) {
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(59.4), "59s");
  EXPECT_EQ(format_duration(65), "1m05s");
  EXPECT_EQ(format_duration(725), "12m05s");
  EXPECT_EQ(format_duration(3720), "1h02m");
  EXPECT_EQ(format_duration(-5), "0s");
}

}  // namespace
}  // namespace cmaf::core
