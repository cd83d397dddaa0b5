// The A/B switches read from the environment (SHARQ_CUDA_*, SHARQ_BLAS_SPLIT, ...): on unless the
// variable is set and starts with 0. One definition for every file that reads one.
#pragma once

#include <cstdlib>

namespace sharq {

inline bool switched_on(const char* var) {
  const char* e = std::getenv(var);
  return !(e && e[0] == '0');
}

}  // namespace sharq
