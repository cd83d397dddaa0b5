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
template <int G>
inline void nvfp4_block(const float* xs, uint8_t* codes, uint8_t* scale, float* deq) {
  const uint8_t sc = nvfp4_block_scale_code(absmax_block<G>(xs));
  const float S = ue4m3_decode(sc);
  *scale = sc;
  e2m1_quantize_block<G>(xs, rcp(S), S, codes, deq);
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
