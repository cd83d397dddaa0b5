// ggml storage types we read from GGUF files: one packed block struct per type (bit layout in the
// comment, size static_assert) and one traits table; scalar dequantization to float32.
// Not sharq's own FP4 formats (formats.h) and not a quantizer, except Q8_0 for test fixtures.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace sharq::model {

// Q8_0: 32 weights, x[i] = d * qs[i].
struct BlockQ8_0 {
  uint16_t d;  // fp16 scale
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8_0) == 34);

// Q4_0: 32 weights, x[j] = d * ((qs[j] & 15) - 8), x[j + 16] = d * ((qs[j] >> 4) - 8).
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_0) == 18);

// Q4_1: 32 weights, x[j] = d * (qs[j] & 15) + m, x[j + 16] = d * (qs[j] >> 4) + m.
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_1) == 20);

// Q4_K: 256 weights in 8 sub-blocks of 32. scales[12] packs 8 six-bit scales and 8 six-bit mins
// (see unpack_scale_min_k4). Each 64-weight chunk c uses 32 bytes of qs: low nibbles are
// sub-block 2c, high nibbles sub-block 2c+1. x = d * sc * q - dmin * m.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ4_K) == 144);

// Q5_K: as Q4_K plus a fifth bit per weight in qh: bit (2c) of qh[l] for the low-nibble weight
// l of chunk c, bit (2c + 1) for the high-nibble one.
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ5_K) == 176);

// Q6_K: 256 weights in 16 sub-blocks of 16 with int8 scales; 6-bit q = 4 low bits (ql) + 2 high
// bits (qh), x = d * scales[s] * (q - 32). Two halves of 128 weights, each using 64 ql bytes,
// 32 qh bytes and 8 scales.
struct BlockQ6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210);

// One row of the traits table: weights per block and bytes per block.
struct GgmlTypeTraits {
  uint32_t type;  // GgmlType value
  const char* name;
  uint32_t block_size;
  uint32_t block_bytes;
  void (*dequantize)(const uint8_t* src, float* dst, size_t n_blocks);
};

// Traits for a type we can dequantize, or nullptr.
const GgmlTypeTraits* ggml_traits(uint32_t type);

// Dequantizes n_elements (a multiple of the block size) from src; throws sharq::Error when the
// type is unsupported, n_elements is not a whole number of blocks or src is too small.
void ggml_dequantize(uint32_t type, std::span<const uint8_t> src, float* dst, uint64_t n_elements);

float fp16_to_float(uint16_t h);
uint16_t float_to_fp16(float f);  // round to nearest even
float bf16_to_float(uint16_t h);

// Q8_0 quantizer (ggml's rounding: d = amax / 127, q = round(x / d)); n multiple of 32.
void quantize_q8_0(const float* src, uint8_t* dst, size_t n);

}  // namespace sharq::model
