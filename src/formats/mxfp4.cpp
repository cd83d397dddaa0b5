// MXFP4 (SPEC 3, OCP MX v1.0): E2M1 codes, one E8M0 power-of-two scale per 32, no tensor scale.
#include <algorithm>
#include <cmath>

#include "sharq/codecs.h"
#include "sharq/formats.h"

namespace sharq {

void mxfp4_quantize_row(const float* x, int64_t k, uint8_t* codes, uint8_t* scales, float* deq) {
  for (int64_t o = 0; o < k; o += 32) {
    float m = 0.0f;
    for (int i = 0; i < 32; ++i) m = std::max(m, std::fabs(x[o + i]));
    // floor(log2(m)) is exact through ilogb (subnormals included); 2 = E2M1's largest exponent.
    const int e = (m == 0.0f) ? -127 : std::clamp(std::ilogb(m) - 2, -127, 127);
    const float down = std::ldexp(1.0f, -e);
    const float up = std::ldexp(1.0f, e);
    scales[o / 32] = e8m0_encode_exponent(e);
    for (int i = 0; i < 32; i += 2) {
      const uint8_t q0 = e2m1_encode(x[o + i] * down);
      const uint8_t q1 = e2m1_encode(x[o + i + 1] * down);
      codes[(o + i) / 2] = static_cast<uint8_t>(q0 | (q1 << 4));
      if (deq) {
        deq[o + i] = e2m1_decode(q0) * up;
        deq[o + i + 1] = e2m1_decode(q1) * up;
      }
    }
  }
}

}  // namespace sharq
