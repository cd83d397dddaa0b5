// MXFP4 (SPEC 3, OCP MX v1.0): E2M1 codes, one E8M0 power-of-two scale per 32, no tensor scale.
#include <algorithm>
#include <cmath>

#include "sharq/codecs.h"
#include "sharq/formats.h"

namespace sharq {

void mxfp4_quantize_row(const float* x, int64_t k, uint8_t* codes, uint8_t* scales, float* deq) {
  for (int64_t o = 0; o < k; o += 32) {
    const float m = absmax_block<32>(x + o);
    // floor(log2(m)) is exact through ilogb (subnormals included); 2 = E2M1's largest exponent.
    const int e = (m == 0.0f) ? -127 : std::clamp(std::ilogb(m) - 2, -127, 127);
    scales[o / 32] = e8m0_encode_exponent(e);
    e2m1_quantize_block<32>(x + o, std::ldexp(1.0f, -e), std::ldexp(1.0f, e), codes + o / 2,
                            deq ? deq + o : nullptr);
  }
}

}  // namespace sharq
