// Input validation shared by every quantizer entry point (SPEC section 1): K % 64 and finiteness.
// Not a tensor type; the library passes raw (rows x cols) row-major float32 buffers.
#pragma once

#include <cstdint>
#include <string_view>

namespace sharq {

// Throws sharq::Error naming the tensor and its shape unless cols is a positive multiple of 64.
void check_k_multiple_of_64(int64_t rows, int64_t cols, std::string_view tensor_name);
// Throws sharq::Error naming the tensor and the first (row, column) holding NaN or +-Inf.
void check_finite(const float* x, int64_t rows, int64_t cols, std::string_view tensor_name);
// Returns max |x| over the buffer (x finite).
float absmax(const float* x, int64_t n, int threads = 1);

}  // namespace sharq
