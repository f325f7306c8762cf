#include "core/progress_line.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "common/error.h"

namespace cmaf::core {

ProgressLine::ProgressLine(std::ostream& out, bool terminal, double quiet_seconds)
    : out_(out), terminal_(terminal), quiet_seconds_(quiet_seconds) {}

ProgressLine ProgressLine::for_stdout() {
  // OpenMPI's mpirun hands its ranks a pseudo-terminal whatever its own output is (a file, a
  // pipe): under it, isatty says nothing about where the lines end up, so they are printed as lines.
  const bool under_mpirun = std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr;
  return ProgressLine(std::cout, isatty(fileno(stdout)) == 1 && !under_mpirun);
}

void ProgressLine::update(int64_t step, int64_t total, const std::string& text, Clock::time_point now) {
  if (terminal_) {
    out_ << '\r' << text << "\033[K";  // erase what a longer previous line left
    line_open_ = true;
    if (step >= total) finish();
    out_.flush();
    return;
  }
  const bool due = !printed_any_ || step >= total ||
                   std::chrono::duration<double>(now - last_print_).count() >= quiet_seconds_;
  if (!due) return;
  out_ << text << '\n';
  out_.flush();
  printed_any_ = true;
  last_print_ = now;
}

void ProgressLine::finish() {
  if (!line_open_) return;
  out_ << '\n';
  out_.flush();
  line_open_ = false;
}

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(seconds < 0 ? 0 : seconds + 0.5);
  if (s >= 3600) return str(s / 3600, "h", s % 3600 / 60 < 10 ? "0" : "", s % 3600 / 60, "m");
  if (s >= 60) return str(s / 60, "m", s % 60 < 10 ? "0" : "", s % 60, "s");
  return str(s, "s");
}

}  // namespace cmaf::core
