// Rank 0's progress line. On a terminal it is rewritten in place (carriage return) at every
// update; into a file (a Slurm output, a pipe) it is printed as a new line at most every
// `quiet_seconds`, plus the first and the last update, so a long run does not flood its log
// (metrics.jsonl keeps every logged step anyway).
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

namespace cmaf::core {

class ProgressLine {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr double kDefaultQuietSeconds = 30.0;

  ProgressLine(std::ostream& out, bool terminal, double quiet_seconds = kDefaultQuietSeconds);
  // For standard output: terminal when stdout is a TTY and the process was not started by
  // OpenMPI's mpirun (its ranks always get a pseudo-terminal).
  static ProgressLine for_stdout();

  // `text` describes step `step` of `total`; `now` is injectable for tests.
  void update(int64_t step, int64_t total, const std::string& text, Clock::time_point now = Clock::now());
  // Ends a line left open on a terminal (call before printing anything else).
  void finish();
  bool terminal() const { return terminal_; }

 private:
  std::ostream& out_;
  bool terminal_;
  double quiet_seconds_;
  bool printed_any_ = false;
  bool line_open_ = false;
  Clock::time_point last_print_{};
};

// "12m05s", "1h02m", "0s".
std::string format_duration(double seconds);

}  // namespace cmaf::core
