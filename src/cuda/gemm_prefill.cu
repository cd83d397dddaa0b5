// Prefill-regime GEMM (any M, built for M >= 33): Y (m, n) = s_x * s_w * sum over paths of
// X~_p (m, k) . W~ (n, k)^T on FP16 tensor cores with FP32 accumulation, one launch.
// CTA tile 128 tokens x BN weight rows, K in steps of 64. The FP4 weight tile (codes + UE4M3
// scales) and the FP16 activation tiles of every path arrive by cp.async, LEAD steps ahead; the
// weight tile is decoded once into FP16 shared memory (value x 2^-14, the same bit trick and the
// same 0,4,1,5,2,6,3,7 order inside each 8-group as prepare's gemm_f16 planes, so A and B are
// permuted alike along K and the dot product is unchanged) and every path's MMA reads that one
// decoded tile into the same accumulators. The decode of step s + 1 runs while the tensor cores
// work on step s (double-buffered decoded tile).
// Two MMA back ends: wgmma (sm_90a, both operands from shared memory through 128-byte-swizzle
// descriptors; the default) and mma.sync m16n8k16 through ldmatrix (the first rung, kept for
// comparison). Both use the same shared layout: rows of 64 FP16 (128 bytes), 16-byte chunk c of
// row r stored at chunk c ^ (r & 7), which is exactly wgmma's 128-byte swizzle on a
// 1024-byte-aligned tile and keeps ldmatrix free of bank conflicts.
// Measured on H100 (M >= 2048, Llama-3.1-8B shapes): 2 paths ~2.9x and 1 path ~2.1x the time of
// cuBLAS BF16 (which is at ~790 TFLOPS); both pay about the same fixed cost per K step on top of
// their MMAs, see the dispatch below.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "codecs.cuh"
#include "cp_async.cuh"
#include "device_info.cuh"
#include "fp4_decode.cuh"
#include "sharq/cuda/kernels.h"
#include "sharq/cuda/weight_layout.h"
#include "sharq/error.h"
#include "wgmma_sp.cuh"

namespace sharq::cuda {
namespace {

constexpr int kThreads = 256;  // 8 warps = 2 warpgroups
constexpr int kBK = 64;        // K per step: one 128-byte swizzle row of FP16

using sm90::fence_acc;
using sm90::fence_proxy_async;
using sm90::ldmatrix_x4;
using sm90::smem_desc;
using sm90::wgmma_commit;
using sm90::wgmma_fence;
using sm90::wgmma_m64n128k16_ss;
using sm90::wgmma_m64n256k16_ss;
using sm90::wgmma_wait;

// ---- FP4 weight decode (e2m1x8_to_f16x2, scale_h2, hmul2_u32: fp4_decode.cuh) --

struct Params {
  const __half* x;  // (paths, m, k) FP16 in GEMM order
  const float* sx;
  const uint8_t* codes;   // (n, k/2), tiled layout (weight_layout.h)
  const uint8_t* scales;  // (n, k/group), tiled layout
  const float* sw;
  int m, n, k;
  int64_t scale_bytes;  // n * k / group: bounds the 4-byte scale word reads
  int tiles_m, tiles_n, group_n;
};

// Shared layout: LEAD + 1 activation slots (PATHS x BM rows each, a multiple of 16 KB, so every
// tile stays 1024-aligned for the swizzle), two decoded weight tiles (BN rows), and LEAD raw
// weight slots (codes BN x 32 B, then one scale word per decode unit). Stage x lives in
// activation slot x % (LEAD + 1) and raw slot x % LEAD: the activation slot of step s - 1 is free
// once its MMAs are done, the raw slot of step s as soon as its own thread has decoded it (each
// thread decodes exactly the codes and scale word it copied, so the decode needs no barrier).
template <int BM, int BN, int PATHS, int LEAD>
struct Layout {
  static constexpr int kActSlots = LEAD + 1;
  static constexpr int kAct = PATHS * BM * 128;
  static constexpr int kCodes = BN * 32;
  static constexpr int kRaw = kCodes + BN * 2 * 4;
  static constexpr int kWdec = BN * 128;
  static constexpr int kWdecOff = kActSlots * kAct;
  static constexpr int kRawOff = kWdecOff + 2 * kWdec;
  static constexpr int kBytes = kRawOff + LEAD * kRaw + 1024;  // + manual 1024 alignment
};

__device__ __forceinline__ uint32_t swz(int row, int chunk) {
  return static_cast<uint32_t>(row * 128 + ((chunk ^ (row & 7)) << 4));
}

// Decode unit u (0 .. 2 BN - 1) = 32 weights: row u / 2, half u % 2 of the 64-wide step. Thread
// tid owns units tid, tid + 256, ...: it copies their codes and scale word and later decodes them.
template <int BM, int BN, int PATHS, int WG, int LEAD>
__device__ __forceinline__ void load_stage(const Params& p, uint32_t sbase, int m0, int n0, int x,
                                           int tid) {
  using L = Layout<BM, BN, PATHS, LEAD>;
  const int k0 = x * kBK;
  const uint32_t act = sbase + (x % L::kActSlots) * L::kAct;
  const uint32_t raw = sbase + L::kRawOff + (x % LEAD) * L::kRaw;
#pragma unroll
  for (int i = 0; i < PATHS * BM * 8 / kThreads; ++i) {
    const int c = tid + i * kThreads, row = c >> 3, cc = c & 7;
    const int path = row / BM, r = row % BM;
    const bool ok = m0 + r < p.m;
    const __half* src =
        ok ? p.x + (static_cast<int64_t>(path) * p.m + m0 + r) * p.k + k0 + cc * 8 : p.x;
    cp_async16(act + swz(row, cc), src, ok ? 16 : 0);
  }
#pragma unroll
  for (int i = 0; i < BN * 2 / kThreads; ++i) {
    const int u = tid + i * kThreads, r = u >> 1, h = u & 1;
    const bool ok = n0 + r < p.n;
    // The tiled weight layout (weight_layout.h): a row's 64 codes of the step (one window
    // holds the step) and their scales are contiguous.
    const int64_t c = ok ? weight_layout::code_offset(n0 + r, k0, p.n, p.k) : 0;
    cp_async16(raw + r * 32 + h * 16, p.codes + c + 16 * h, ok ? 16 : 0);
    int64_t off = weight_layout::scale_of_code(c, WG);
    int bytes = 4;
    if (WG == 32) {
      // Two g32 scale bytes per row and step, 2-byte aligned: copy the aligned word holding
      // them (decode picks the half), clipped at the end of the buffer.
      off &= ~static_cast<int64_t>(3);
      bytes = static_cast<int>(min(static_cast<int64_t>(4), p.scale_bytes - off));
    }
    cp_async4(raw + L::kCodes + u * 4, ok ? p.scales + off : p.scales, ok ? bytes : 0);
  }
}

template <int BN, int WG>
__device__ __forceinline__ void decode_unit(const Params& p, const uint8_t* raw, uint8_t* wdec,
                                            int n0, int k0, int u) {
  const int r = u >> 1, h = u & 1;
  const uint4 q = *reinterpret_cast<const uint4*>(raw + r * 32 + h * 16);
  const uint32_t sw = *reinterpret_cast<const uint32_t*>(raw + BN * 32 + u * 4);
  __half2 s[2];
  if (WG == 32) {
    const int b =
        static_cast<int>(weight_layout::scale_offset(min(n0 + r, p.n - 1), k0, p.n, p.k, 32) & 2) +
        h;
    s[0] = s[1] = scale_h2(sw >> (8 * b));
  } else {
    s[0] = scale_h2(sw >> (16 * h));
    s[1] = scale_h2(sw >> (16 * h + 8));
  }
  const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
  for (int c = 0; c < 4; ++c) {
    uint32_t v[4];
    e2m1x8_stored_to_f16x2(words[c], v);
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = hmul2_u32(v[j], s[c >> 1]);
    *reinterpret_cast<uint4*>(wdec + swz(r, h * 4 + c)) = make_uint4(v[0], v[1], v[2], v[3]);
  }
}

__device__ __forceinline__ void store2(__nv_bfloat16* y, int64_t i, float a, float b, bool two,
                                       bool vec) {
  if (two && vec) {
    *reinterpret_cast<__nv_bfloat162*>(y + i) = __floats2bfloat162_rn(a, b);
  } else {
    y[i] = __float2bfloat16_rn(a);
    if (two) y[i + 1] = __float2bfloat16_rn(b);
  }
}
__device__ __forceinline__ void store2(float* y, int64_t i, float a, float b, bool two, bool vec) {
  if (two && vec) {
    *reinterpret_cast<float2*>(y + i) = make_float2(a, b);
  } else {
    y[i] = a;
    if (two) y[i + 1] = b;
  }
}
template <typename OutT>
__device__ __forceinline__ void store_pair(const Params& p, OutT* y, int tok, int col, float a,
                                           float b, float scale) {
  if (tok >= p.m || col >= p.n) return;
  store2(y, static_cast<int64_t>(tok) * p.n + col, a * scale, b * scale, col + 1 < p.n,
         (p.n & 1) == 0);
}

// MMA back ends (BM = 128 tokens: two warpgroups of 64 for wgmma, 2 x 4 warps for mma.sync):
//   kSync: mma.sync + ldmatrix, the decode of step s + 1 interleaved with step s's MMAs.
//   kWgmma: wgmma issued, then loads and decode while it runs, then a full wait each step.
//   kWgmmaPipe: one step's wgmmas stay in flight across the barrier; a second barrier per step
//     tells every warpgroup that step s - 1's MMAs are done before its slot and decoded tile
//     are overwritten.
enum class Mma { kSync, kWgmma, kWgmmaPipe };

// ABL (dev ablations, timing only; results are wrong): bit 0 skips the in-loop decode, bit 1 the
// in-loop loads.
template <int BM, int BN, int PATHS, int WG, int LEAD, Mma MMA, typename OutT, int ABL = 0>
__global__ void __launch_bounds__(kThreads, 1) gemm_prefill_kernel(Params p, OutT* __restrict__ y) {
  using L = Layout<BM, BN, PATHS, LEAD>;
  static_assert(BM == 128, "two warpgroups of 64 tokens / 2 x 4 warps");
  static_assert(LEAD >= 2, "stage s + 1's weights must be in flight while step s runs");
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023);
  const uint32_t sbase = smem_u32(smem);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int per_group = p.group_n * p.tiles_m;
  const int grp = blockIdx.x / per_group, idx = blockIdx.x % per_group;
  const int gn = min(p.group_n, p.tiles_n - grp * p.group_n);
  const int n0 = (grp * p.group_n + idx % gn) * BN, m0 = (idx / gn) * BM;
  const int nk = p.k / kBK;

  auto load = [&](int x) {
    if (x < nk) load_stage<BM, BN, PATHS, WG, LEAD>(p, sbase, m0, n0, x, tid);
    cp_async_commit();  // always: one group per stage keeps the wait counts fixed
  };
  auto decode = [&](int x) {
    const uint8_t* raw = smem + L::kRawOff + (x % LEAD) * L::kRaw;
    uint8_t* wdec = smem + L::kWdecOff + (x & 1) * L::kWdec;
#pragma unroll
    for (int i = 0; i < BN * 2 / kThreads; ++i)
      decode_unit<BN, WG>(p, raw, wdec, n0, x * kBK, tid + i * kThreads);
  };

  for (int x = 0; x < LEAD; ++x) load(x);
  cp_async_wait<LEAD - 1>();  // own copies of stage 0
  decode(0);

  const int g = lane >> 2, t = lane & 3;
  const float scale = *p.sx * *p.sw * 16384.0f;  // 2^14 undoes the decode's subnormal placement

  if constexpr (MMA == Mma::kSync) {
    constexpr int WM = BM / 2, WN = BN / 4;
    const int wm = warp >> 2, wn = warp & 3;
    float acc[WM / 16][WN / 8][4];
#pragma unroll
    for (int i = 0; i < WM / 16; ++i)
#pragma unroll
      for (int j = 0; j < WN / 8; ++j)
        acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0;
    for (int s = 0; s < nk; ++s) {
      cp_async_wait<LEAD - 2>();  // own copies of step s's activations and s + 1's weights
      __syncthreads();
      load(s + LEAD);
      const uint32_t act = sbase + (s % L::kActSlots) * L::kAct;
      const uint32_t wd = sbase + L::kWdecOff + (s & 1) * L::kWdec;
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        uint32_t bf[WN / 8][2];
#pragma unroll
        for (int j2 = 0; j2 < WN / 16; ++j2) {
          const int row = wn * WN + j2 * 16 + (lane & 7) + ((lane >> 4) << 3);
          uint32_t r[4];
          ldmatrix_x4(r, wd + swz(row, 2 * kk + ((lane >> 3) & 1)));
          bf[2 * j2][0] = r[0];
          bf[2 * j2][1] = r[1];
          bf[2 * j2 + 1][0] = r[2];
          bf[2 * j2 + 1][1] = r[3];
        }
#pragma unroll
        for (int path = 0; path < PATHS; ++path) {
#pragma unroll
          for (int i = 0; i < WM / 16; ++i) {
            const int row = path * BM + wm * WM + i * 16 + (lane & 15);
            uint32_t af[4];
            ldmatrix_x4(af, act + swz(row, 2 * kk + (lane >> 4)));
#pragma unroll
            for (int j = 0; j < WN / 8; ++j) mma16816(acc[i][j], af, bf[j][0], bf[j][1]);
          }
        }
        if (s + 1 < nk && kk == 1) decode(s + 1);
      }
    }
#pragma unroll
    for (int i = 0; i < WM / 16; ++i) {
#pragma unroll
      for (int j = 0; j < WN / 8; ++j) {
        const int tok = m0 + wm * WM + i * 16 + g, col = n0 + wn * WN + j * 8 + 2 * t;
        store_pair(p, y, tok, col, acc[i][j][0], acc[i][j][1], scale);
        store_pair(p, y, tok + 8, col, acc[i][j][2], acc[i][j][3], scale);
      }
    }
  } else {
    fence_proxy_async();
    const int wgi = warp >> 2;  // warpgroup: tokens [64 wgi, 64 wgi + 64) of the tile
    float acc[BN / 2];
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;
    for (int s = 0; s < nk; ++s) {
      cp_async_wait<LEAD - 2>();
      fence_proxy_async();
      __syncthreads();
      const uint32_t act = sbase + (s % L::kActSlots) * L::kAct + wgi * 64 * 128;
      const uint32_t wd = sbase + L::kWdecOff + (s & 1) * L::kWdec;
      fence_acc(acc);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
        for (int path = 0; path < PATHS; ++path) {
          const uint64_t da = smem_desc(act + path * BM * 128 + kk * 32);
          const uint64_t db = smem_desc(wd + kk * 32);
          if constexpr (BN == 256) {
            wgmma_m64n256k16_ss(acc, da, db);
          } else {
            wgmma_m64n128k16_ss(acc, da, db);
          }
        }
      }
      wgmma_commit();
      fence_acc(acc);
      if constexpr (MMA == Mma::kWgmmaPipe) {
        wgmma_wait<1>();  // step s - 1 done in this warpgroup
        fence_acc(acc);
        __syncthreads();  // ... and in the other: its activation slot and decoded tile are free
      }
      if (ABL & 2) {
        cp_async_commit();
      } else {
        load(s + LEAD);
      }
      if (s + 1 < nk && !(ABL & 1)) decode(s + 1);
      fence_proxy_async();
      if constexpr (MMA == Mma::kWgmma) {
        wgmma_wait<0>();
        fence_acc(acc);
      }
    }
    wgmma_wait<0>();
    fence_acc(acc);
    const int row = m0 + wgi * 64 + (warp & 3) * 16 + g;
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
      const int col = n0 + j * 8 + 2 * t;
      store_pair(p, y, row, col, acc[4 * j], acc[4 * j + 1], scale);
      store_pair(p, y, row + 8, col, acc[4 * j + 2], acc[4 * j + 3], scale);
    }
  }
}

template <int BN, int PATHS, int WG, int LEAD, Mma MMA, typename OutT, int ABL = 0>
void launch_cfg(const uint16_t* x, const float* sx, int64_t m, const Nvfp4View& w, int64_t n,
                int64_t k, OutT* y, int group_n, cudaStream_t stream) {
  constexpr int BM = 128;
  using L = Layout<BM, BN, PATHS, LEAD>;
  auto kernel = gemm_prefill_kernel<BM, BN, PATHS, WG, LEAD, MMA, OutT, ABL>;
  opt_in_smem<gemm_prefill_kernel<BM, BN, PATHS, WG, LEAD, MMA, OutT, ABL>, L::kBytes>(
      "gemm_prefill smem");
  Params p;
  p.x = reinterpret_cast<const __half*>(x);
  p.sx = sx;
  p.codes = w.codes;
  p.scales = w.scales;
  p.sw = w.tensor_scale;
  p.m = static_cast<int>(m);
  p.n = static_cast<int>(n);
  p.k = static_cast<int>(k);
  p.scale_bytes = n * k / WG;
  p.tiles_m = static_cast<int>((m + BM - 1) / BM);
  p.tiles_n = static_cast<int>((n + BN - 1) / BN);
  p.group_n = std::max(1, std::min(group_n, p.tiles_n));
  const unsigned grid = static_cast<unsigned>(p.tiles_m) * static_cast<unsigned>(p.tiles_n);
  kernel<<<grid, kThreads, L::kBytes, stream>>>(p, y);
  check(cudaGetLastError(), "gemm_prefill_kernel");
}

// Measured choice (H100, dev/cuda/prefill_variants.cu): wgmma with a full wait per step,
// 128 x 256 tiles, the ring as deep as shared memory allows (2 paths: 223 KB). Against it at
// M = 2048 / 8192: mma.sync 1.6x slower, 128 x 128 tiles 1.3x, keeping one step in flight
// (kWgmmaPipe, two barriers per step) 1.1x, lead 2 instead of 3 1.05x.
template <int PATHS, int WG, typename OutT>
void dispatch(const uint16_t* x, const float* sx, int64_t m, const Nvfp4View& w, int64_t n,
              int64_t k, OutT* y, cudaStream_t stream) {
  constexpr int kLead = PATHS == 2 ? 3 : 4;
  launch_cfg<256, PATHS, WG, kLead, Mma::kWgmma>(x, sx, m, w, n, k, y, 8, stream);
}

template <typename OutT>
void gemm_prefill_any(const uint16_t* x, int paths, const float* sx, int64_t m, const Nvfp4View& w,
                      int group, int64_t n, int64_t k, OutT* y, cudaStream_t stream) {
  if (m < 1 || m > (int64_t{1} << 24))
    throw Error("cuda::gemm_prefill: M = " + std::to_string(m) + " is outside 1..2^24");
  if (k <= 0 || k % kBK != 0 || n <= 0 || n > (int64_t{1} << 24) || k > (int64_t{1} << 24))
    throw Error("cuda::gemm_prefill: bad shape N x K = " + shape_str(n, k));
  if (group != 16 && group != 32) throw Error("cuda::gemm_prefill: weight group must be 16 or 32");
  if (paths != 1 && paths != 2) throw Error("cuda::gemm_prefill: paths must be 1 or 2");
  // 16-byte cp.async of activations and codes, 4-byte scale words.
  if ((reinterpret_cast<uintptr_t>(x) & 15) || (reinterpret_cast<uintptr_t>(w.codes) & 15) ||
      (reinterpret_cast<uintptr_t>(w.scales) & 3))
    throw Error("cuda::gemm_prefill: misaligned operand (x, codes: 16 bytes; scales: 4)");
  if (paths == 2) {
    if (group == 32) return dispatch<2, 32>(x, sx, m, w, n, k, y, stream);
    return dispatch<2, 16>(x, sx, m, w, n, k, y, stream);
  }
  if (group == 32) return dispatch<1, 32>(x, sx, m, w, n, k, y, stream);
  return dispatch<1, 16>(x, sx, m, w, n, k, y, stream);
}

}  // namespace

void gemm_prefill(const uint16_t* x_gemm_f16, int paths, const float* x_tensor_scale, int64_t m,
                  const Nvfp4View& w, int w_group, int64_t n, int64_t k, uint16_t* y_bf16,
                  cudaStream_t stream) {
  gemm_prefill_any(x_gemm_f16, paths, x_tensor_scale, m, w, w_group, n, k,
                   reinterpret_cast<__nv_bfloat16*>(y_bf16), stream);
}

void gemm_prefill_f32(const uint16_t* x_gemm_f16, int paths, const float* x_tensor_scale, int64_t m,
                      const Nvfp4View& w, int w_group, int64_t n, int64_t k, float* y_f32,
                      cudaStream_t stream) {
  gemm_prefill_any(x_gemm_f16, paths, x_tensor_scale, m, w, w_group, n, k, y_f32, stream);
}

}  // namespace sharq::cuda
