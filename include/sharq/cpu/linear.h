// CPU linear products on float32 operands through OpenBLAS (DESIGN "CPU path"): the reference
// for every mode runs the GEMM on exactly dequantized operands. Not a quantizer.
#pragma once

#include <cstdint>

namespace sharq::cpu {

// Y (M, N) = X (M, K) . W (N, K)^T [+ bias (N)], float32, row-major. bias may be null.
void linear_f32(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n,
                int64_t k);

}  // namespace sharq::cpu
