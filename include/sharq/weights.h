// Weight quantization per mode (SPEC section 6): one payload per matrix. SharQ modes store
// NVFP4 g32 once; the dense path reads it through a g16 view that repeats each g32 scale,
// computed on the fly, never copied.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "sharq/decompose.h"
#include "sharq/formats.h"
#include "sharq/modes.h"

namespace sharq {

// W: (N x K) row-major, one output channel per row.
struct QuantizedWeight {
  Mode mode = Mode::kBf16;
  int64_t rows = 0;                // N
  int64_t cols = 0;                // K
  PackedTensor packed;             // the one payload (unused for bf16)
  std::vector<float> bf16_values;  // bf16 mode: W rounded to bf16, as float32 (N x K)
};

QuantizedWeight quantize_weight(Mode mode, const float* w, int64_t rows, int64_t cols,
                                std::string_view tensor_name, int threads = 1);
// Original-units dequantized weights (N x K). With variant.fp8_decoded, each decoded
// scaled-domain value q*S is rounded as an FP8 Hopper path would see it (round_decoded_to_fp8).
void dequantize_weight(const QuantizedWeight& w, float* out, int threads = 1,
                       const Variant& variant = {});
// Bytes the stored weight occupies (codes + scales + tensor scale), for memory reports.
int64_t weight_storage_bytes(const QuantizedWeight& w);

// Read-only g16 view of an NVFP4 g32 payload: block j16 of a row uses g32 scale j16 / 2.
class Nvfp4G16View {
 public:
  // Throws sharq::Error unless p is NVFP4 g32.
  explicit Nvfp4G16View(const PackedTensor& p);
  int64_t rows() const { return p_.rows; }
  int64_t cols() const { return p_.cols; }
  uint8_t scale_code(int64_t r, int64_t j16) const {
    return p_.scales[static_cast<size_t>(r * (p_.cols / 32) + j16 / 2)];
  }
  uint8_t code(int64_t r, int64_t c) const { return get_nibble(p_.codes.data(), r * p_.cols + c); }
  // Scaled-domain value E2M1^-1(q) * S16.
  float value(int64_t r, int64_t c) const;
  const PackedTensor& payload() const { return p_; }

 private:
  const PackedTensor& p_;
};

}  // namespace sharq
