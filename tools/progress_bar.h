// A progress line for long-running tools: a bar with rate and ETA redrawn in place when stderr
// is a terminal, one plain line per ~10% otherwise (logs, CI). Not a logger.
#pragma once

#include <cstdint>
#include <string>

namespace sharq::tools {

class ProgressBar {
 public:
  // unit names what `done` counts ("windows", "steps").
  explicit ProgressBar(std::string unit);
  // label: what is running now; done of total steps so far; seconds since the start.
  void update(const std::string& label, int64_t done, int64_t total, double seconds);

 private:
  std::string unit_;
  bool tty_;
  int64_t last_decile_ = -1;
};

// "m:ss" for a duration in seconds.
std::string clock_str(double seconds);

}  // namespace sharq::tools
