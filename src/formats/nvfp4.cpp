// NVFP4 (SPEC 3): E2M1 codes, UE4M3 block scale per g = 16 or 32, float32 tensor scale.
// Scalar reference of the per-row quantizer; the tensor scale is applied by the caller.
#include <algorithm>
#include <cmath>

#include "sharq/codecs.h"
#include "sharq/formats.h"

namespace sharq {

uint8_t nvfp4_block_scale_code(float block_absmax) {
  const float s = std::clamp(block_absmax / 6.0f, 0x1p-9f, 448.0f);
  return ue4m3_encode(s);
}

namespace {

// One block of G scaled values -> G codes (packed), one scale code, optional dequant.
// Written as straight-line float/int lane arithmetic (no table lookups) so that -O3
// vectorizes it; the compare sums equal e2m1_encode / e2m1_decode exactly (tested).
template <int G>
inline void nvfp4_block(const float* xs, uint8_t* codes, uint8_t* scale, float* deq) {
  float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < G; i += 8) {
    for (int l = 0; l < 8; ++l) lanes[l] = std::max(lanes[l], std::fabs(xs[i + l]));
  }
  float m = 0.0f;
  for (float v : lanes) m = std::max(m, v);
  const uint8_t sc = nvfp4_block_scale_code(m);
  const float S = ue4m3_decode(sc);
  const float r = rcp(S);
  *scale = sc;
  int32_t q[G];
  float d[G];
  for (int i = 0; i < G; ++i) {
    const float v = xs[i] * r;
    const float a = std::fabs(v);
    const bool t0 = a > 0.25f, t1 = a >= 0.75f, t2 = a > 1.25f, t3 = a >= 1.75f, t4 = a > 2.5f,
               t5 = a >= 3.5f, t6 = a > 5.0f;
    q[i] = (t0 + t1 + t2 + t3 + t4 + t5 + t6) | (std::signbit(v) ? 8 : 0);
    const float mag = (t0 ? 0.5f : 0.0f) + (t1 ? 0.5f : 0.0f) + (t2 ? 0.5f : 0.0f) +
                      (t3 ? 0.5f : 0.0f) + (t4 ? 1.0f : 0.0f) + (t5 ? 1.0f : 0.0f) +
                      (t6 ? 2.0f : 0.0f);
    d[i] = std::copysign(mag, v) * S;
  }
  for (int i = 0; i < G; i += 2) codes[i / 2] = static_cast<uint8_t>(q[i] | (q[i + 1] << 4));
  if (deq) {
    for (int i = 0; i < G; ++i) deq[i] = d[i];
  }
}

}  // namespace

void nvfp4_quantize_row(const float* xs, int64_t k, int group, uint8_t* codes, uint8_t* scales,
                        float* deq) {
  for (int64_t b = 0; b * group < k; ++b) {
    const int64_t o = b * group;
    if (group == 16) {
      nvfp4_block<16>(xs + o, codes + o / 2, scales + b, deq ? deq + o : nullptr);
    } else {
      nvfp4_block<32>(xs + o, codes + o / 2, scales + b, deq ? deq + o : nullptr);
    }
  }
}

}  // namespace sharq
