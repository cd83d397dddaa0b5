// FP8 E4M3 with a float32 tensor scale (SPEC 5, the W8A8 baseline): one byte per element.
#include "sharq/codecs.h"
#include "sharq/formats.h"

namespace sharq {

void fp8_quantize_row(const float* xs, int64_t k, uint8_t* codes, uint8_t* /*scales*/, float* deq) {
  for (int64_t i = 0; i < k; ++i) {
    codes[i] = e4m3_encode(xs[i]);
    if (deq) deq[i] = e4m3_decode(codes[i]);
  }
}

}  // namespace sharq
