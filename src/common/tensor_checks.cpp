// SPEC section 1 input checks, with error messages that name tensor, shape and position.
#include "sharq/tensor_checks.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "sharq/error.h"
#include "sharq/parallel.h"

namespace sharq {

void check_k_multiple_of_64(int64_t rows, int64_t cols, std::string_view tensor_name) {
  if (rows < 0 || cols <= 0 || cols % 64 != 0) {
    throw Error("tensor '" + std::string(tensor_name) + "' has shape " + shape_str(rows, cols) +
                ": K (columns) must be a positive multiple of 64");
  }
}

void check_finite(const float* x, int64_t rows, int64_t cols, std::string_view tensor_name) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    bool ok = true;
    for (int64_t c = 0; c < cols; ++c) ok &= std::isfinite(row[c]);
    if (ok) continue;
    for (int64_t c = 0; c < cols; ++c) {
      if (!std::isfinite(row[c])) {
        throw Error("tensor '" + std::string(tensor_name) + "' " + shape_str(rows, cols) +
                    " has a non-finite value (" + std::to_string(row[c]) + ") at row " +
                    std::to_string(r) + ", column " + std::to_string(c));
      }
    }
  }
}

float absmax(const float* x, int64_t n, int threads) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(threads, n / 65536 + 1));
  std::vector<float> partial(static_cast<size_t>(chunks), 0.0f);
  const int64_t per = (n + chunks - 1) / chunks;
  parallel_for(chunks, static_cast<int>(chunks), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t lo = i * per, hi = std::min(n, lo + per);
      float m = 0.0f;
      for (int64_t j = lo; j < hi; ++j) m = std::max(m, std::fabs(x[j]));
      partial[static_cast<size_t>(i)] = m;
    }
  });
  float m = 0.0f;
  for (float p : partial) m = std::max(m, p);
  return m;
}

}  // namespace sharq
