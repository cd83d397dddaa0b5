// sharq::Error: the one exception type for bad input and broken contracts, carrying context.
// Not for programming errors inside the library (those are bugs, not user-facing errors).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace sharq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Formats "(rows x cols)" for error messages.
std::string shape_str(int64_t rows, int64_t cols);

}  // namespace sharq
