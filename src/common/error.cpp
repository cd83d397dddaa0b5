// Helpers for error messages; the Error type itself lives in the header.
#include "sharq/error.h"

#include <cstdio>

namespace sharq {

std::string shape_str(int64_t rows, int64_t cols) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "(%lld x %lld)", static_cast<long long>(rows),
                static_cast<long long>(cols));
  return buf;
}

}  // namespace sharq
