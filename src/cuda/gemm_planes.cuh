// Where a prepare writes the FP16 GEMM planes (kernels.h PlaneOrder) and how one lane quarter of
// a 32-element block lands there, in either K order.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>
#include <string>

#include "sharq/cuda/kernels.h"
#include "sharq/error.h"

namespace sharq::cuda {

struct GemmPlanes {
  __half* p = nullptr;   // null: no planes
  int64_t plane = 0;     // halves per path plane (rows * ld)
  int64_t ld = 0;        // halves per row
  uint32_t per_row = 0;  // 32-blocks per row (k / 32)
  bool wgmma = false;    // PlaneOrder::kWgmma
  bool rows2 = false;    // PlaneOrder::kMmaRows: a row's planes side by side (plane = k halves)
  // SharQ modes: the planes hold the merged operand (store_merged8) and this one byte per 32-block
  // (row-major, rows x k / 32), 1 where the block's lo (plane 1) is not all zero; null: the
  // planes hold the two paths (kernels.h, lo_flags).
  uint8_t* lo_flags = nullptr;
};

// The planes of a (rows, k) activation at gemm_f16 (null: none) in `order`; `who` names the
// caller in errors.
inline GemmPlanes gemm_planes(uint16_t* gemm_f16, int64_t rows, int64_t k, PlaneOrder order,
                              const char* who, uint8_t* lo_flags = nullptr) {
  if (!gemm_f16) {
    if (lo_flags)
      throw Error(std::string("cuda::") + who + ": lo_flags describe planes: give gemm_f16 too");
    return {};
  }
  const int64_t ld = plane_row_halves(k, order);
  const bool wgmma = order == PlaneOrder::kWgmma, rows2 = order == PlaneOrder::kMmaRows;
  if (rows2 && !lo_flags)
    throw Error(std::string("cuda::") + who +
                ": kMmaRows planes hold the merged operand: give lo_flags");
  // The kWgmma store indexes a 32-block's row in 32 bits (decode-sized planes).
  if (wgmma && rows * ld > (int64_t{1} << 31))
    throw Error(std::string("cuda::") + who + ": " + std::to_string(rows) + " x " +
                std::to_string(k) + " planes are too large for the wgmma K order (2^31 halves)");
  return {reinterpret_cast<__half*>(gemm_f16),
          rows2 ? k : rows * ld,
          ld,
          static_cast<uint32_t>(k / 32),
          wgmma,
          rows2,
          lo_flags};
}

// The pairs (d[j], d[j + 4]), j = 0..3, of 8 scaled-domain decodes as FP16 (exact): the pair
// order of the GEMM's nibble decode inside an 8-group.
__device__ __forceinline__ void gemm_pairs(const float* d, uint32_t (&w)[4]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const __half2 h = __floats2half2_rn(d[j], d[j + 4]);
    w[j] = *reinterpret_cast<const uint32_t*>(&h);
  }
}

// Elements [8 u, 8 u + 8) of 32-block b (row-major block index), decoded into d, into plane
// `path`. kMma: one 16-byte store at b * 32 + 8 u. kWgmma: block b is 32-block t = b % 4 of its
// 128-wide window, and its pair j lands in window slot 32 u + 16 (j / 2) + 8 (j % 2) + 2 t (the
// wgmma kernel's K-step order, gemm_decode_wgmma.cu); in a window of 64 (k % 128 == 64, the
// row's last) the lane also writes the zeros of the empty 32-blocks t + 2.
__device__ __forceinline__ void store_plane8(const GemmPlanes& g, int path, int64_t b, int u,
                                             const float* d) {
  uint32_t w[4];
  gemm_pairs(d, w);
  __half* plane = g.p + path * g.plane;
  if (!g.wgmma) {
    int64_t at = b * 32;
    if (g.rows2) {  // row b / per_row starts g.ld halves after the one before
      const int64_t row = b / g.per_row;
      at += row * (g.ld - 32 * static_cast<int64_t>(g.per_row));
    }
    *reinterpret_cast<uint4*>(plane + at + 8 * u) = make_uint4(w[0], w[1], w[2], w[3]);
    return;
  }
  const uint32_t b32 = static_cast<uint32_t>(b), row = b32 / g.per_row, kb = b32 - row * g.per_row;
  uint32_t* dst =
      reinterpret_cast<uint32_t*>(plane + row * g.ld + (kb >> 2) * 128 + 32 * u + 2 * (kb & 3));
  const bool pad = (g.per_row & 3) == 2 && (kb >> 2) == (g.per_row >> 2);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int off = 8 * (j >> 1) + 4 * (j & 1);  // in words: 16 (j / 2) + 8 (j % 2) halves
    dst[off] = w[j];
    if (pad) dst[off + 2] = 0u;
  }
}

// The SharQ planes (docs/merged_operand.md): both paths share s_t and W~, so the GEMM needs only
// their sum A = X~_sp + R~ (exact in float32), written as plane 0 hi = RNE_fp16(A) and plane 1
// lo = A - hi (exactly an FP16 value, zero unless A needs more than FP16's 11 bits). Elements
// [8 u, 8 u + 8) of 32-block b from the paths' decodes; returns whether any of the 8 lo is
// non-zero. The decode GEMM sums both planes' products, so the output is SPEC 7's.
__device__ __forceinline__ bool store_merged8(const GemmPlanes& g, int64_t b, int u,
                                              const float* dsp, const float* dr) {
  float hi[8], lo[8];
  bool any = false;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const float a = __fadd_rn(dsp[i], dr[i]);
    hi[i] = __half2float(__float2half_rn(a));
    lo[i] = __fsub_rn(a, hi[i]);
    any |= lo[i] != 0.0f;
  }
  store_plane8(g, 0, b, u, hi);
  store_plane8(g, 1, b, u, lo);
  return any;
}

}  // namespace sharq::cuda
