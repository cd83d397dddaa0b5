// Error and energy statistics used by `sharq quantize --stats`, the eval tool and the benches.
// Accumulates in double. Not a report writer.
#pragma once

#include <cstdint>

namespace sharq {

// Returns ||a - b||_F / ||b||_F (0 when both are zero; +inf when only b is zero).
double relative_frobenius_error(const float* a, const float* b, int64_t n);
// Returns sum(keep_i * x_i^2) / sum(x_i^2): the share of X's energy the mask keeps (0 for X = 0).
double kept_energy_share(const float* x, const uint8_t* keep, int64_t n);

}  // namespace sharq
