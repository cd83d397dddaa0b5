// Pieces shared by the two decode-regime GEMM kernels (gemm_decode_mma.cu: a block per weight
// tile, warps splitting K; gemm_decode_shared.cu: warps on different tiles sharing each
// activation window through shared memory): the launch's parts, the per-lane weight window,
// tile addressing and the output write.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "codecs.cuh"
#include "fp4_decode.cuh"
#include "sharq/cuda/weight_layout.h"

namespace sharq::cuda::decode_mma {

constexpr int kWin = 128;  // K per warp iteration: 4 lanes x one 32-element block each
constexpr int kMaxParts = 4;

// The weights and outputs of one launch: parts that share the input x (q, k, v; gate, up), their
// tiles of 16 * RT rows numbered one after the other (part i owns tiles
// [tile0[i], tile0[i + 1])).
template <typename OutT>
struct Parts {
  const uint8_t* codes[kMaxParts];
  const uint8_t* scales[kMaxParts];
  const float* sw[kMaxParts];
  OutT* y[kMaxParts];
  int64_t n[kMaxParts];
  int64_t tile0[kMaxParts + 1];
  int count;
  bool accumulate;  // y += product
  // Two paths: the prepare's lo flags for the planes (kernels.h, lo_flags; null: none), read by
  // the per-tile kernel at M <= 8.
  const uint8_t* lo_flags;
};

__device__ __forceinline__ uint32_t comp(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// Scales stay raw bytes until the slice is consumed: decoding them at load time would make the
// prefetch wait for the load right away (it cost half the bandwidth in the first measurement).
// RT 16-row sub-tiles per warp share each activation slice (M <= 8: half the activation reads
// per weight byte with RT = 2).
template <int RT>
struct WeightSlice {
  uint4 q[RT][2];        // [sub-tile][rows g and g+8]: 32 codes each
  uint32_t s[RT][2][2];  // [sub-tile][row][16-half of the 32-block]: UE4M3 code
};

// The same load, coherent (no .nc) and volatile: ptxas keeps it where it is written relative to
// griddepcontrol.wait, where it sank the .nc form below the wait in the M = 1 product.
__device__ __forceinline__ uint4 ld_no_l1_early(const void* p) {
  uint4 v;
  asm volatile("ld.global.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}
__device__ __forceinline__ uint32_t ld_u16_early(const void* p) {
  unsigned short v;
  asm volatile("ld.global.u16 %0, [%1];" : "=h"(v) : "l"(p));
  return v;
}

// Read-once weight codes: not allocated in L1, so the activation lines stay there.
__device__ __forceinline__ uint4 ld_no_l1(const void* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

// Row r (g, g + 8) of sub-tile st: the u-th 8 codes of the lane's 32-block as four FP16 pairs
// (fp4_decode.cuh's order), times the block's scale: the A-fragment values, exact.
template <int RT>
__device__ __forceinline__ void scaled_pairs(const WeightSlice<RT>& sl, int st, int r, int u,
                                             __half2 scale, uint32_t (&h)[4]) {
  e2m1x8_stored_to_f16x2(comp(sl.q[st][r], u), h);
#pragma unroll
  for (int j = 0; j < 4; ++j) h[j] = hmul2_u32(h[j], scale);
}

// rows[st][r]: sub-tile st's rows g (r = 0) and g + 8 (r = 1) of the part's n rows. The weights
// are in the tiled layout (weight_layout.h): a warp's 16 rows of one window are one 1 KB run.
template <int WG, int RT>
__device__ __forceinline__ void load_slice(WeightSlice<RT>& ws, const uint8_t* __restrict__ codes,
                                           const uint8_t* __restrict__ scales,
                                           const int64_t (&rows)[RT][2], int64_t n, int64_t k,
                                           int64_t kk, bool valid) {
#pragma unroll
  for (int st = 0; st < RT; ++st) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      if (!valid) {
        ws.q[st][r] = make_uint4(0, 0, 0, 0);  // code 0 decodes to +0: a missing half window adds 0
        ws.s[st][r][0] = ws.s[st][r][1] = 0u;
        continue;
      }
      const int64_t c = weight_layout::code_offset(rows[st][r], kk, n, k);
      ws.q[st][r] = ld_no_l1(codes + c);
      const uint8_t* sp = scales + weight_layout::scale_of_code(c, WG);
      if (WG == 32) {
        ws.s[st][r][0] = ws.s[st][r][1] = __ldg(sp);
      } else {
        ws.s[st][r][0] = __ldg(sp);
        ws.s[st][r][1] = __ldg(sp + 1);
      }
    }
  }
}

// acc: y += v (the residual add fused into the epilogue), the same float sum as a separate add.
__device__ __forceinline__ void store_out(__nv_bfloat16* y, int64_t i, float v, bool acc) {
  y[i] = __float2bfloat16_rn(acc ? __bfloat162float(y[i]) + v : v);
}
__device__ __forceinline__ void store_out(float* y, int64_t i, float v, bool acc) {
  y[i] = acc ? y[i] + v : v;
}

// One 16-row tile of one part: its weight rows and its output.
template <typename OutT>
struct TileRef {
  const uint8_t* codes;
  const uint8_t* scales;
  const float* sw;
  OutT* y;
  int64_t n, row_base;
};

// Constant indices only, so the parameters are read in place. row_base: the tile's first row.
template <int RT, typename OutT>
__device__ __forceinline__ TileRef<OutT> tile_ref(const Parts<OutT>& parts, int64_t tile) {
  TileRef<OutT> r{parts.codes[0], parts.scales[0], parts.sw[0],
                  parts.y[0],     parts.n[0],      tile * 16 * RT};
#pragma unroll
  for (int i = 1; i < kMaxParts; ++i) {
    if (i < parts.count && tile >= parts.tile0[i]) {
      r = {parts.codes[i], parts.scales[i], parts.sw[i],
           parts.y[i],     parts.n[i],      (tile - parts.tile0[i]) * 16 * RT};
    }
  }
  return r;
}

// Lane (g, t)'s two weight rows of each sub-tile, clamped into the part (clamped rows are not
// written).
template <int RT, typename OutT>
__device__ __forceinline__ void tile_rows(const TileRef<OutT>& r, int g, int64_t (&rows)[RT][2]) {
#pragma unroll
  for (int st = 0; st < RT; ++st) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = r.row_base + 16 * st + 8 * h + g;
      rows[st][h] = row < r.n ? row : r.n - 1;
    }
  }
}

// load_slice's fast form for whole windows (k - 128 w >= 128) of a tile group whose rows all lie
// in the part (row_base + 16 RT <= n): there the layout's offsets are linear in (sub-tile, row
// half, window), so a lane's addresses are one base plus constants plus w * 1024 (w * 2048 / WG
// scale bytes), in 32 bits, where code_offset's general form took about 30 64-bit integer
// instructions a window (SASS of the M <= 8 kernel: 19-30% of its loop's instructions).
// whole == 0 (no window covered) for other groups and for k > 2^28 (w * 1024 must fit 32 bits).
template <int WG, int RT>
struct LinearSlices {
  const uint8_t* c;    // the lane's codes of window 0: sub-tile 0, row g, bytes [16t, 16t + 16)
  const uint8_t* s;    // and their scale byte(s)
  int64_t tile_bytes;  // one 16-row tile's codes: 8k
  int64_t whole;       // windows covered: [0, whole)

  template <typename OutT>
  __device__ __forceinline__ LinearSlices(const TileRef<OutT>& tr, int64_t k, int g, int t)
      : tile_bytes(8 * k) {
    const int64_t off = (tr.row_base >> 4) * 8 * k + 64 * g + 16 * t;
    c = tr.codes + off;
    s = tr.scales + off * 2 / WG;
    whole = tr.row_base + 16 * RT <= tr.n && k <= (int64_t{1} << 28) ? k / kWin : 0;
  }
  __device__ __forceinline__ bool covers(int64_t w) const { return w < whole; }
  __device__ __forceinline__ void load(WeightSlice<RT>& ws, int64_t w) const {
    const uint32_t w32 = static_cast<uint32_t>(w);
#pragma unroll
    for (int st = 0; st < RT; ++st) {
      const uint8_t* cp = c + st * tile_bytes + w32 * 1024u;
      const uint8_t* sp = s + st * (tile_bytes * 2 / WG) + w32 * (2048u / WG);
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        ws.q[st][r] = ld_no_l1(cp + 512 * r);
        if (WG == 32) {
          ws.s[st][r][0] = ws.s[st][r][1] = __ldg(sp + 32 * r);
        } else {
          ws.s[st][r][0] = __ldg(sp + 64 * r);
          ws.s[st][r][1] = __ldg(sp + 64 * r + 1);
        }
      }
    }
  }
};

// Writes one 16-row sub-tile's outputs from its final sums v (the MMA accumulator layout: lane
// (g, t), element c = row g (+8 for c >= 2), token 8i + 2t + (c & 1)). PACK: columns j and j + 4
// hold the two paths of token j (lanes t and t + 2), summed here.
template <int NT, bool PACK, typename OutT>
__device__ __forceinline__ void store_tile(const float (&v)[NT][4], const TileRef<OutT>& r,
                                           int64_t row0, const float* sx, int m, bool accumulate,
                                           int lane) {
  const int g = lane >> 2, t = lane & 3;
  const float scale = *sx * *r.sw * 16384.0f;  // 2^14 undoes the decode's subnormal placement
#pragma unroll
  for (int i = 0; i < NT; ++i) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int64_t row = row0 + g + (c >= 2 ? 8 : 0);
      const int tok = i * 8 + 2 * t + (c & 1);
      if (PACK) {
        const float s = v[i][c] + __shfl_xor_sync(0xffffffffu, v[i][c], 2);
        if (t < 2 && row < r.n && tok < m) store_out(r.y, tok * r.n + row, s * scale, accumulate);
      } else if (row < r.n && tok < m) {
        store_out(r.y, tok * r.n + row, v[i][c] * scale, accumulate);
      }
    }
  }
}

// The shared-activation kernel's launch (gemm_decode_shared.cu) for M = 1..32: rt 16-row tiles
// per warp (1 or 2), split_k blocks per tile group (0: chosen per launch).
template <int PATHS, typename OutT>
void launch_shared_x(const uint16_t* x, const float* sx, int64_t m, Parts<OutT> parts, int group,
                     int rt, int split_k, int64_t k, cudaStream_t stream);

// The same tiles on wgmma (gemm_decode_wgmma.cu): each warpgroup's four tiles one m64nN product
// with the weight in registers, from planes in the kWgmma order; split_k as launch_shared_x's.
template <int PATHS, typename OutT>
void launch_wgmma_x(const uint16_t* x, const float* sx, int64_t m, Parts<OutT> parts, int group,
                    int split_k, int64_t k, cudaStream_t stream);

}  // namespace sharq::cuda::decode_mma
