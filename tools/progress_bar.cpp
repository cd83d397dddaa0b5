// ProgressBar: terminal bar with ETA, or decile lines when stderr is not a terminal.
#include "progress_bar.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace sharq::tools {

std::string clock_str(double s) {
  const long long t = static_cast<long long>(s + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld", t / 60, t % 60);
  return buf;
}

ProgressBar::ProgressBar(std::string unit) : unit_(std::move(unit)), tty_(isatty(STDERR_FILENO)) {}

void ProgressBar::update(const std::string& label, int64_t done, int64_t total, double seconds) {
  if (total <= 0) return;
  const double eta =
      done > 0 ? seconds / static_cast<double>(done) * static_cast<double>(total - done) : 0.0;
  if (tty_) {
    constexpr int kWidth = 30;
    const int fill = static_cast<int>(kWidth * std::min(done, total) / total);
    std::fprintf(stderr, "\r%-24s [%s%s] %lld/%lld %s  elapsed %s  ETA %s ", label.c_str(),
                 std::string(static_cast<size_t>(fill), '#').c_str(),
                 std::string(static_cast<size_t>(kWidth - fill), '.').c_str(),
                 static_cast<long long>(done), static_cast<long long>(total), unit_.c_str(),
                 clock_str(seconds).c_str(), clock_str(eta).c_str());
    if (done >= total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
    return;
  }
  const int64_t decile = 10 * done / total;
  if (decile == last_decile_ && done != total) return;
  last_decile_ = decile;
  std::fprintf(stderr, "%s: %lld/%lld %s, elapsed %s, ETA %s\n", label.c_str(),
               static_cast<long long>(done), static_cast<long long>(total), unit_.c_str(),
               clock_str(seconds).c_str(), clock_str(eta).c_str());
}

}  // namespace sharq::tools
