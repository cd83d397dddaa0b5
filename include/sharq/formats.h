// Block formats of SPEC.md section 3 (NVFP4 g16/g32, MXFP4, HiF4) plus FP8 with a tensor
// scale: packed storage, the per-row scalar quantizers, and the one traits table.
// Not the SharQ decomposition (decompose.h) and not SIMD/GPU fast paths.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sharq {

enum class Format : uint8_t { kNvfp4G16, kNvfp4G32, kMxfp4, kHif4, kFp8 };

// HiF4 per-block scale word (32 bits per 64 elements, SPEC 3 "HiF4"):
//   e6m2   : level-1 scale B (E6M2 code)
//   e1_8   : bit i = E1_8[i], i = 0..7 (one bit per 8 elements)
//   e1_16  : bit j = E1_16[j], j = 0..15 (one bit per 4 elements)
struct Hif4BlockScale {
  uint8_t e6m2;
  uint8_t e1_8;
  uint16_t e1_16;
};
static_assert(sizeof(Hif4BlockScale) == 4, "HiF4 scale word is 32 bits");

// A quantized (rows x cols) matrix in one format, planar layout:
//   codes  : FP4 formats: rows*cols/2 bytes, element 2i in the low nibble, row-major;
//            FP8: rows*cols bytes.
//   scales : rows*(cols/block) scale units of scale_bytes each, row-major
//            (UE4M3 byte for NVFP4, E8M0 byte for MXFP4, Hif4BlockScale for HiF4; none for FP8).
//   tensor_scale : s_t for NVFP4 and FP8, 1 otherwise.
struct PackedTensor {
  Format format = Format::kNvfp4G16;
  int64_t rows = 0;
  int64_t cols = 0;
  float tensor_scale = 1.0f;
  std::vector<uint8_t> codes;
  std::vector<uint8_t> scales;

  // 4-bit code (FP4 formats) or byte (FP8) of element (r, c).
  uint8_t code(int64_t r, int64_t c) const;
};

// Quantizes one row of k values that are already in the format's scaled domain
// (x' for NVFP4, X for MXFP4/HiF4) block by block. Writes k/2 packed code bytes, k/block scale
// units, and, when deq is not null, the dequantized values in the same (scaled) domain.
using QuantizeRowFn = void (*)(const float* xs, int64_t k, uint8_t* codes, uint8_t* scales,
                               float* deq);
// Dequantizes one packed row back to the scaled domain.
using DequantizeRowFn = void (*)(const uint8_t* codes, const uint8_t* scales, int64_t k,
                                 float* out);

struct FormatTraits {
  Format format;
  const char* name;
  int block;               // elements per scale unit (0 = no block scales)
  int code_bits;           // 4 or 8
  int scale_bytes;         // bytes per scale unit
  bool tensor_scaled;      // has a float32 tensor scale s_t
  float tensor_scale_div;  // s_t = max|X| / this (2688 for NVFP4, 448 for FP8)
  double bits_per_value;   // storage cost including scales
  QuantizeRowFn quantize_row;
  DequantizeRowFn dequantize_row;
};

const FormatTraits& format_traits(Format f);
// Throws sharq::Error for an unknown name.
Format format_from_name(std::string_view name);

// Per-row reference quantizers (exposed for tests and fast paths to compare against).
void nvfp4_quantize_row(const float* xs, int64_t k, int group, uint8_t* codes, uint8_t* scales,
                        float* deq);
void mxfp4_quantize_row(const float* x, int64_t k, uint8_t* codes, uint8_t* scales, float* deq);
void hif4_quantize_row(const float* x, int64_t k, uint8_t* codes, uint8_t* scales, float* deq);
void fp8_quantize_row(const float* xs, int64_t k, uint8_t* codes, uint8_t* scales, float* deq);

// NVFP4 block scale: S = UE4M3(clamp(m / 6, 2^-9, 448)) as a code.
uint8_t nvfp4_block_scale_code(float block_absmax);

// Tensor scale s_t = a / div (1 when a = 0). Throws when rcp(s_t) is not finite (a tensor whose
// max is so small that float32 cannot represent 1/s_t), naming the tensor: see docs/spec_notes.md.
float tensor_scale_for(float absmax, float div, std::string_view tensor_name);

// Quantizes a whole (rows x cols) float32 matrix in format f (tensor scale computed over it).
// Validates finiteness and K (cols) divisibility, naming `tensor_name` in errors.
PackedTensor quantize(Format f, const float* x, int64_t rows, int64_t cols,
                      std::string_view tensor_name, int threads = 1);
// Dequantizes to original units: (decode * block scale) * s_t, left to right.
void dequantize(const PackedTensor& t, float* out, int threads = 1);
// Row r (< t.rows) in the format's scaled domain, decode * block scale (no s_t): t.cols floats.
void dequantize_row_scaled(const PackedTensor& t, int64_t r, float* out);

// Packs/unpacks FP4 nibbles: element 2i is the low nibble of byte i.
inline void put_nibble(uint8_t* codes, int64_t i, uint8_t code) {
  uint8_t& b = codes[i >> 1];
  b = (i & 1) ? static_cast<uint8_t>((b & 0x0F) | (code << 4))
              : static_cast<uint8_t>((b & 0xF0) | (code & 0x0F));
}
inline uint8_t get_nibble(const uint8_t* codes, int64_t i) {
  return (i & 1) ? static_cast<uint8_t>(codes[i >> 1] >> 4)
                 : static_cast<uint8_t>(codes[i >> 1] & 0x0F);
}

}  // namespace sharq
