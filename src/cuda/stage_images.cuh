// The 2:4 prefill kernel's activation stage images (gemm_prefill_ws.cuh): where each 8-element
// group of an (m, k) activation lands, and the 2:4 compression of the backbone. Written by the
// prepare pass (prepare.cu) or expanded from its packed outputs (activation_expand.cu); one
// definition, so the two agree by construction. Per 128-row tile and 64-wide K step (image
// img = tile * (k / 64) + step, row rr in the tile, 8-group g in the step):
// - R (residual, kR bytes an image): 128-byte rows, 16-byte chunk g at g ^ (rr & 7), natural
//   element order;
// - S (backbone kept values, kS bytes): 64-byte rows, the two kept values of each 4-chunk, the
//   16-byte chunk of 8-groups (g & ~1, g | 1) at (g >> 1) ^ ((rr >> 1) & 3), 8 bytes a group;
// - E (metadata, kE bytes): the sparse MMA's register layout, word
//   rb * 32 + j32 * 16 + (rr % 8) * 2 + hf for 16-row block rb, k32 half j32 and 16-element half
//   hf of it; rows rr % 16 < 8 in bits 0-15, the others in bits 16-31; a 4-bit nibble a 4-chunk.
// Rows past m in the last tile read as zeros with the pair (0, 1) (clear_padding).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "gemm_prefill_ws.cuh"

namespace sharq::cuda::stage_images {

// Row of 32-block b (k / 32 blocks a row) as umulhi(b, mul) >> shift, the round-up method
// (Hacker's Delight 10-9), exact for b < 2^31 and a divisor d >= 2: shift = ceil(log2 d) - 1,
// mul = ceil(2^(32 + shift) / d) < 2^32. mul = 0 (more than 2^31 blocks) falls back to a
// division. The prepare pass is issue-bound and a 64-bit division is ~25 instructions a lane.
struct RowDiv {
  uint32_t mul, shift;
};
inline RowDiv row_div(int64_t m, int64_t k) {
  const int64_t d = k / 32;
  if (d < 2 || d >= (int64_t{1} << 31) || m * d > (int64_t{1} << 31)) return {0, 0};
  uint32_t l = 0;
  while ((int64_t{1} << l) < d) ++l;
  const uint32_t shift = l - 1;
  const uint64_t mul =
      ((uint64_t{1} << (32 + shift)) + static_cast<uint64_t>(d) - 1) / static_cast<uint64_t>(d);
  return {static_cast<uint32_t>(mul), shift};
}

struct Regions {
  uint8_t* r;
  uint8_t* s;
  uint8_t* e;
  RowDiv row;
};
inline Regions regions(uint8_t* images, int64_t m, int64_t k) {
  const int64_t n = prefill_ws::image_count(m, k);
  return {images, images + n * prefill_ws::kR, images + n * (prefill_ws::kR + prefill_ws::kS),
          row_div(m, k)};
}
// The image of row r's 64-wide K step holding column col, and byte offsets inside it.
__device__ __forceinline__ int64_t image_of(int64_t r, int64_t col, int64_t k) {
  return (r / prefill_ws::kBM) * (k / prefill_ws::kBK) + col / prefill_ws::kBK;
}
__device__ __forceinline__ uint32_t r_offset(int rr, int g) {
  return static_cast<uint32_t>(rr * 128 + ((g ^ (rr & 7)) << 4));
}
__device__ __forceinline__ uint32_t s_offset(int rr, int g) {
  return static_cast<uint32_t>(rr * 64 + (((g >> 1) ^ ((rr >> 1) & 3)) << 4) + 8 * (g & 1));
}
// The 16-bit half of the metadata word that holds 8-groups (g & ~1, g | 1) of row rr.
__device__ __forceinline__ uint32_t e_half_offset(int rr, int g) {
  const int word = (rr / 16) * 32 + (g / 4) * 16 + (rr % 8) * 2 + (g % 4) / 2;
  return static_cast<uint32_t>(4 * word + ((rr % 16) >= 8 ? 2 : 0));
}

// The two kept values of 4-chunk c (elements 4c .. 4c + 3) of a natural-order 8-group v (four
// FP16 pairs) and its metadata nibble (first index | second << 2, first < second), from the
// group's E2M1 code word (element i in nibble i; a value is non-zero when its code's magnitude
// bits are and its block scale is). The backbone holds at most two non-zeros a chunk (its 2:4
// mask); with fewer, the pair is completed with index 0 or 1, whose value is then zero. kPairs:
// the nibble for each 4-bit non-zero pattern (with more than two, the first and the last, which
// the 2:4 mask never leaves).
constexpr uint64_t kPairs = 0xCDCECDCC89884444ull;
__device__ __forceinline__ uint32_t compress4(const uint4& v, uint32_t word, bool scaled, int c,
                                              uint32_t& nibble) {
  const uint32_t x = word >> (16 * c);
  const uint32_t any = (x | (x >> 1) | (x >> 2)) & 0x1111u;  // bit 4i: element i is non-zero
  const uint32_t nz =
      scaled ? (any & 1u) | ((any >> 3) & 2u) | ((any >> 6) & 4u) | ((any >> 9) & 8u) : 0u;
  nibble = static_cast<uint32_t>(kPairs >> (4 * nz)) & 15u;
  const uint32_t i0 = nibble & 3u, i1 = nibble >> 2;
  // Bytes 2i, 2i + 1 of (hi:lo) hold element i of the chunk.
  const uint32_t sel = (2 * i0) | ((2 * i0 + 1) << 4) | ((2 * i1) << 8) | ((2 * i1 + 1) << 12);
  return c == 0 ? __byte_perm(v.x, v.y, sel) : __byte_perm(v.z, v.w, sel);
}

// Writes one 8-group: lane q of 32-block b (row-major, k / 32 a row) of the activation, its
// residual and backbone as natural-order FP16 pairs and the backbone's code word; `scaled`: the
// backbone's block scale is not zero. The lanes of the group pair (q, q ^ 1) must be adjacent
// threads and call this together: they share a metadata half-word.
__device__ __forceinline__ void write_group(const Regions& img, int64_t k, int64_t b, int q,
                                            const uint4& backbone, const uint4& residual,
                                            uint32_t sp_codes, bool scaled) {
  const int64_t per_row = k / 32;
  const int64_t r =
      img.row.mul ? __umulhi(static_cast<uint32_t>(b), img.row.mul) >> img.row.shift : b / per_row;
  const int64_t col = (b - r * per_row) * 32 + 8 * q;
  const int rr = static_cast<int>(r % prefill_ws::kBM), g = static_cast<int>(col % 64) / 8;
  const int64_t i = image_of(r, col, k);
  *reinterpret_cast<uint4*>(img.r + i * prefill_ws::kR + r_offset(rr, g)) = residual;
  uint32_t n0, n1;
  const uint32_t k0 = compress4(backbone, sp_codes, scaled, 0, n0);
  const uint32_t k1 = compress4(backbone, sp_codes, scaled, 1, n1);
  *reinterpret_cast<uint2*>(img.s + i * prefill_ws::kS + s_offset(rr, g)) = make_uint2(k0, k1);
  const uint32_t mine = n0 | (n1 << 4);
  const uint32_t other = __shfl_xor_sync(3u << (threadIdx.x & 30u), mine, 1);
  if ((g & 1) == 0)
    *reinterpret_cast<uint16_t*>(img.e + i * prefill_ws::kE + e_half_offset(rr, g)) =
        static_cast<uint16_t>(mine | (other << 8));
}

// The last tile's rows past m: R and S zero, E the pair (0, 1) in every nibble (byte 0x44). The
// whole last tile is cleared; the writer then fills its rows below m.
inline cudaError_t clear_padding(uint8_t* images, int64_t m, int64_t k, cudaStream_t stream) {
  if (m % prefill_ws::kBM == 0) return cudaSuccess;
  const Regions g = regions(images, m, k);
  const int64_t nk = k / prefill_ws::kBK, first = (prefill_ws::m_tiles(m) - 1) * nk;
  cudaError_t e = cudaMemsetAsync(g.r + first * prefill_ws::kR, 0,
                                  static_cast<size_t>(nk) * prefill_ws::kR, stream);
  if (e == cudaSuccess)
    e = cudaMemsetAsync(g.s + first * prefill_ws::kS, 0, static_cast<size_t>(nk) * prefill_ws::kS,
                        stream);
  if (e == cudaSuccess)
    e = cudaMemsetAsync(g.e + first * prefill_ws::kE, 0x44,
                        static_cast<size_t>(nk) * prefill_ws::kE, stream);
  return e;
}

}  // namespace sharq::cuda::stage_images
