// HiF4 (SPEC 3): 64-element blocks, three-level scale (E6M2 + 8 x E1 + 16 x E1), S1P2 codes.
// Follows the SPEC steps literally; powers of two are applied as exact float32 multiplies.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "sharq/codecs.h"
#include "sharq/formats.h"

namespace sharq {

void hif4_quantize_row(const float* x, int64_t k, uint8_t* codes, uint8_t* scales, float* deq) {
  for (int64_t o = 0; o < k; o += 64) {
    const float* xb = x + o;
    float v16[16];
    for (int j = 0; j < 16; ++j) {
      v16[j] = std::max(std::max(std::fabs(xb[4 * j]), std::fabs(xb[4 * j + 1])),
                        std::max(std::fabs(xb[4 * j + 2]), std::fabs(xb[4 * j + 3])));
    }
    float v8[8];
    float vmax = 0.0f;
    for (int i = 0; i < 8; ++i) {
      v8[i] = std::max(v16[2 * i], v16[2 * i + 1]);
      vmax = std::max(vmax, v8[i]);
    }
    const float sf = (vmax == 0.0f) ? kE6M2Min : vmax / 7.0f;
    const uint8_t bcode = e6m2_encode(sf);
    const float B = e6m2_decode(bcode);
    const float rec = rcp(B);
    Hif4BlockScale word{bcode, 0, 0};
    int e8[8];
    int e16[16];
    for (int i = 0; i < 8; ++i) {
      e8[i] = (v8[i] * rec >= 4.0f) ? 1 : 0;
      word.e1_8 = static_cast<uint8_t>(word.e1_8 | (e8[i] << i));
    }
    for (int j = 0; j < 16; ++j) {
      const float down8 = e8[j / 2] ? 0.5f : 1.0f;
      e16[j] = ((v16[j] * rec) * down8 >= 2.0f) ? 1 : 0;
      word.e1_16 = static_cast<uint16_t>(word.e1_16 | (e16[j] << j));
    }
    std::memcpy(scales + (o / 64) * 4, &word, 4);
    for (int kk = 0; kk < 64; kk += 2) {
      uint8_t q[2];
      for (int t = 0; t < 2; ++t) {
        const int e = kk + t;
        const float down8 = e8[e / 8] ? 0.5f : 1.0f;
        const float down16 = e16[e / 4] ? 0.5f : 1.0f;
        q[t] = s1p2_encode(((xb[e] * rec) * down8) * down16);
        if (deq) {
          const float up = static_cast<float>(1 << (e8[e / 8] + e16[e / 4]));
          deq[o + e] = (s1p2_decode(q[t]) * B) * up;
        }
      }
      codes[(o + kk) / 2] = static_cast<uint8_t>(q[0] | (q[1] << 4));
    }
  }
}

}  // namespace sharq
