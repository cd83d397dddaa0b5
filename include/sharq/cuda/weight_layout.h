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

// Host conversions (tests, tools): row-major PackedTensor bytes <-> this layout.
inline void to_tiled(const uint8_t* codes, const uint8_t* scales, int64_t n, int64_t k, int group,
                     uint8_t* tiled_codes, uint8_t* tiled_scales) {
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t kk = 0; kk < k; kk += 2)
      tiled_codes[code_offset(r, kk, n, k)] = codes[(r * k + kk) / 2];
    for (int64_t kk = 0; kk < k; kk += group) {
      tiled_scales[scale_offset(r, kk, n, k, group)] = scales[(r * k + kk) / group];
    }
  }
}
inline void from_tiled(const uint8_t* tiled_codes, const uint8_t* tiled_scales, int64_t n,
                       int64_t k, int group, uint8_t* codes, uint8_t* scales) {
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t kk = 0; kk < k; kk += 2)
      codes[(r * k + kk) / 2] = tiled_codes[code_offset(r, kk, n, k)];
    for (int64_t kk = 0; kk < k; kk += group) {
      scales[(r * k + kk) / group] = tiled_scales[scale_offset(r, kk, n, k, group)];
    }
  }
}

}  // namespace sharq::cuda::weight_layout
