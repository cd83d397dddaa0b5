// Where the GPU keeps a packed weight's bytes: the same FP4 codes and UE4M3 scales as the CPU
// reference's PackedTensor (SPEC 6, bit for bit), stored in tiles of 16 rows x 128 K instead of
// row after row. The decode GEMM reads one such tile-window per warp step; stored row-major its
// 16 rows sit K/2 bytes apart (16 separate 64-byte runs), stored tiled they are one 1 KB run, so a
// block's whole weight stream is contiguous. Measured (dev/cuda/decode_tiled_math_probe.cu, the
// library's math, M = 1, H100): gate/up 27.7 -> 25.9 us, down 16.7 -> 15.1 us (docs/RESULTS.md).
//
// The layout, for an (n x k) matrix (k a multiple of 64; n anything), with
//   tile = row / 16, rows_in_tile = min(16, n - 16 tile) (the last tile may be short),
//   w = kk / 128, width = min(128, k - 128 w) (the last window is 64 wide when k % 128 == 64):
//   codes of (row, kk):
//     tile * 8k + w * rows_in_tile * 64 + (row % 16) * width / 2 + (kk % 128) / 2
//   scales of (row, kk), group g:
//     tile * 16k / g + w * rows_in_tile * 128 / g + (row % 16) * width / g + (kk % 128) / g
// so within a window each row's codes (width/2 bytes) and scales (width/g bytes) are contiguous,
// a 32-element block's 16 code bytes and its scale(s) are contiguous, and the total size is the
// row-major size (no padding). A cut at a multiple of 16 rows is itself a tiled matrix (the
// grouped launches' parts); any other cut is not.
//
// Within each 4-byte code word (8 elements, kk % 8 == 0 .. 7) the bits are stored in the order
// stored_code_word gives, not SPEC 6's nibble order: the GEMMs' FP4 -> FP16 decode
// (fp4_decode.cuh) then takes 9 integer operations per word instead of 11 (see there). The codes
// are the same; from_tiled gives SPEC 6's bytes back bit for bit.
// Used by the device kernels (weight packing, the decode and prefill GEMMs, the prefill weight
// decode) and, on the host, by tests and tools that move weights between the two layouts.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SHARQ_HD __host__ __device__ __forceinline__
#else
#define SHARQ_HD inline
#endif

namespace sharq::cuda::weight_layout {

SHARQ_HD int64_t rows_in_tile(int64_t row, int64_t n) {
  const int64_t left = n - (row & ~int64_t{15});
  return left < 16 ? left : 16;
}
SHARQ_HD int64_t window_width(int64_t kk, int64_t k) {
  const int64_t left = k - (kk & ~int64_t{127});
  return left < 128 ? left : 128;
}

// Byte offset of the code byte holding element kk (of an even pair) of row `row`.
SHARQ_HD int64_t code_offset(int64_t row, int64_t kk, int64_t n, int64_t k) {
  return (row >> 4) * 8 * k + (kk >> 7) * rows_in_tile(row, n) * 64 +
         (row & 15) * (window_width(kk, k) >> 1) + ((kk & 127) >> 1);
}

// The scale of the `group`-element block (16 or 32) whose codes include byte offset `code`.
// Every term of the scale formula above is the code formula's times 2 / group, and a block never
// straddles a window, so (as in the row-major layout) the scale sits at any of its code bytes'
// offsets * 2 / group, rounded down: a kernel computes one offset and derives the other.
SHARQ_HD int64_t scale_of_code(int64_t code, int group) {
  return code * 2 / group;
}

// Byte offset of the scale of the `group`-element block holding element kk of row `row`.
SHARQ_HD int64_t scale_offset(int64_t row, int64_t kk, int64_t n, int64_t k, int group) {
  return scale_of_code(code_offset(row, kk, n, k), group);
}

// Where element e (0..7) of a code word sits once stored: its E2M1 magnitude bits (m, e0, e1;
// SPEC bits 0..2) at mag_bit(e) .. mag_bit(e) + 2, its sign (SPEC bit 3) at sign_bit(e). Elements
// 0 and 4 sit where an FP16 pair of them times 2^-14 keeps them (bits 9-11 and 15 of each half),
// elements 1 and 5 the same a byte lower, and 2, 3, 6, 7 each with the sign in bit 0 and the
// magnitude in bits 4-6 of a byte, so one shift each puts all four in FP16 high-byte form.
// (Byte j of the constants is element j's bit in the low half; elements 4-7 sit 16 bits higher.)
SHARQ_HD int mag_bit(int e) {
  return static_cast<int>((0x0C040109u >> (8 * (e & 3))) & 0xFFu) + 16 * (e >> 2);
}
SHARQ_HD int sign_bit(int e) {
  return static_cast<int>((0x0800070Fu >> (8 * (e & 3))) & 0xFFu) + 16 * (e >> 2);
}

// A code word in SPEC 6's order (element e in nibble e of the little-endian word) in the stored
// order, and back.
SHARQ_HD uint32_t stored_code_word(uint32_t spec) {
  uint32_t s = 0;
  for (int e = 0; e < 8; ++e) {
    const uint32_t c = (spec >> (4 * e)) & 0xFu;
    s |= (c & 7u) << mag_bit(e) | (c >> 3) << sign_bit(e);
  }
  return s;
}
SHARQ_HD uint32_t spec_code_word(uint32_t stored) {
  uint32_t w = 0;
  for (int e = 0; e < 8; ++e) {
    const uint32_t c = ((stored >> mag_bit(e)) & 7u) | ((stored >> sign_bit(e)) & 1u) << 3;
    w |= c << (4 * e);
  }
  return w;
}

// Host conversions (tests, tools): row-major PackedTensor bytes <-> this layout.
inline uint32_t load_word_le(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
inline void store_word_le(uint8_t* p, uint32_t w) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(w >> (8 * i));
}
inline void to_tiled(const uint8_t* codes, const uint8_t* scales, int64_t n, int64_t k, int group,
                     uint8_t* tiled_codes, uint8_t* tiled_scales) {
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t kk = 0; kk < k; kk += 8) {
      store_word_le(tiled_codes + code_offset(r, kk, n, k),
                    stored_code_word(load_word_le(codes + (r * k + kk) / 2)));
    }
    for (int64_t kk = 0; kk < k; kk += group) {
      tiled_scales[scale_offset(r, kk, n, k, group)] = scales[(r * k + kk) / group];
    }
  }
}
inline void from_tiled(const uint8_t* tiled_codes, const uint8_t* tiled_scales, int64_t n,
                       int64_t k, int group, uint8_t* codes, uint8_t* scales) {
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t kk = 0; kk < k; kk += 8) {
      store_word_le(codes + (r * k + kk) / 2,
                    spec_code_word(load_word_le(tiled_codes + code_offset(r, kk, n, k))));
    }
    for (int64_t kk = 0; kk < k; kk += group) {
      scales[(r * k + kk) / group] = tiled_scales[scale_offset(r, kk, n, k, group)];
    }
  }
}

}  // namespace sharq::cuda::weight_layout
