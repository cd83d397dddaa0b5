// Double-precision error and energy statistics.
#include "sharq/stats.h"

#include <cmath>
#include <limits>

namespace sharq {

double relative_frobenius_error(const float* a, const float* b, int64_t n) {
  double num = 0.0, den = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    num += d * d;
    den += static_cast<double>(b[i]) * static_cast<double>(b[i]);
  }
  if (den == 0.0) return num == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(num / den);
}

double kept_energy_share(const float* x, const uint8_t* keep, int64_t n) {
  double kept = 0.0, total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double e = static_cast<double>(x[i]) * static_cast<double>(x[i]);
    total += e;
    if (keep[i]) kept += e;
  }
  return total == 0.0 ? 0.0 : kept / total;
}

}  // namespace sharq
