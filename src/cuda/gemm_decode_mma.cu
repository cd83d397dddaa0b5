// Decode-regime GEMM (M <= 32), version 2: FP16 tensor cores (mma.sync m16n8k16, FP32
// accumulation). Weights stream from HBM once as FP4 codes + UE4M3 scales and are decoded once
// per element into FP16 registers; both SharQ paths (prepare()'s exact FP16 decodes of the
// backbone and of the residual) are multiplied by that same A fragment into the same
// accumulators. Not a prefill kernel: one 16-row weight tile per block, split-K over warps.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "codecs.cuh"
#include "sharq/cuda/kernels.h"
#include "sharq/error.h"

namespace sharq::cuda {
namespace {

constexpr int kWarps = 4;  // small blocks: every 16-row tile of a 6144-row layer is resident
constexpr int kWin = 128;  // K per warp iteration: 4 lanes x one 32-element block each

// Four FP16 pairs from 8 E2M1 nibbles, pair j = (nibble j, nibble j + 4). Each half is the code's
// value times 2^-14: sign to bit 15, exponent and mantissa to bits 11..9, so exponent field 0
// lands in FP16 subnormals exactly as E2M1's subnormal 0.5 does. 2^14 returns in the epilogue.
__device__ __forceinline__ void e2m1x8_to_f16x2(uint32_t w, uint32_t h[4]) {
  h[0] = ((w << 12) & 0x80008000u) | ((w << 9) & 0x0E000E00u);
  h[1] = ((w << 8) & 0x80008000u) | ((w << 5) & 0x0E000E00u);
  h[2] = ((w << 4) & 0x80008000u) | ((w << 1) & 0x0E000E00u);
  h[3] = (w & 0x80008000u) | ((w >> 3) & 0x0E000E00u);
}

__device__ __forceinline__ uint32_t hmul2_u32(uint32_t a, __half2 s) {
  __half2 v = *reinterpret_cast<__half2*>(&a);
  v = __hmul2(v, s);  // exact: E2M1 x UE4M3 x 2^-14 needs <= 6 bits and stays >= 2^-24
  return *reinterpret_cast<uint32_t*>(&v);
}

__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t comp(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

struct WeightSlice {
  uint4 q[2];       // rows g and g+8: 32 codes each
  __half2 s[2][2];  // [row][16-half of the 32-block]
};

template <int WG>
__device__ __forceinline__ void load_slice(WeightSlice& ws, const uint8_t* __restrict__ codes,
                                           const uint8_t* __restrict__ scales, int64_t r0,
                                           int64_t r1, int64_t k, int64_t kk, bool valid) {
  const int64_t rows[2] = {r0, r1};
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (!valid) {
      ws.q[r] = make_uint4(0, 0, 0, 0);  // code 0 decodes to +0: the missing half window adds 0
      ws.s[r][0] = ws.s[r][1] = __float2half2_rn(0.0f);
      continue;
    }
    ws.q[r] = __ldg(reinterpret_cast<const uint4*>(codes + (rows[r] * k + kk) / 2));
    if (WG == 32) {
      ws.s[r][0] = ws.s[r][1] = __float2half2_rn(ue4m3_decode(__ldg(scales + (rows[r] * k + kk) / 32)));
    } else {
      const int64_t b = (rows[r] * k + kk) / 16;
      ws.s[r][0] = __float2half2_rn(ue4m3_decode(__ldg(scales + b)));
      ws.s[r][1] = __float2half2_rn(ue4m3_decode(__ldg(scales + b + 1)));
    }
  }
}

// x: (PATHS, m, k) FP16, GEMM order (prepare's gemm_f16). y: (m, n) bf16.
// Lane (g, t) owns weight rows g and g+8 of the tile and K elements [32t, 32t+32) of each window;
// the MMA's K order is permuted (pair (e, e+4) of each 8-group sits where the MMA expects
// (2t, 2t+1)) identically in A and B, which a dot product does not see.
template <int NT, int PATHS, int WG>
__global__ void __launch_bounds__(kWarps * 32, 4)
    gemm_decode_mma_kernel(const __half* __restrict__ x, const float* __restrict__ sx, int m,
                           const uint8_t* __restrict__ wcodes, const uint8_t* __restrict__ wscales,
                           const float* __restrict__ sw, int64_t n, int64_t k,
                           __nv_bfloat16* __restrict__ y) {
  __shared__ float red[kWarps][NT][4][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int64_t row_base = static_cast<int64_t>(blockIdx.x) * 16;
  const int64_t r0 = row_base + g < n ? row_base + g : n - 1;  // clamped rows are not written
  const int64_t r1 = row_base + g + 8 < n ? row_base + g + 8 : n - 1;
  const int64_t nwin = (k + kWin - 1) / kWin;

  float acc[NT][4];
#pragma unroll
  for (int i = 0; i < NT; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;

  WeightSlice cur, nxt;
  int64_t win = warp;
  if (win < nwin) {
    load_slice<WG>(cur, wcodes, wscales, r0, r1, k, win * kWin + 32 * t, win * kWin + 32 * t < k);
  }
  for (; win < nwin; win += kWarps) {
    const int64_t kk = win * kWin + 32 * t;
    const bool valid = kk < k;
    // Prefetch the next window's weights before this one's math: two 16-byte loads per row in
    // flight per lane keep HBM busy with only 4 resident blocks per SM.
    const int64_t wn = win + kWarps;
    if (wn < nwin) load_slice<WG>(nxt, wcodes, wscales, r0, r1, k, wn * kWin + 32 * t, wn * kWin + 32 * t < k);
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      uint32_t h0[4], h1[4];
      e2m1x8_to_f16x2(comp(cur.q[0], u), h0);
      e2m1x8_to_f16x2(comp(cur.q[1], u), h1);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        h0[j] = hmul2_u32(h0[j], cur.s[0][u >> 1]);
        h1[j] = hmul2_u32(h1[j], cur.s[1][u >> 1]);
      }
      uint4 xb[PATHS][NT];
#pragma unroll
      for (int p = 0; p < PATHS; ++p) {
#pragma unroll
        for (int i = 0; i < NT; ++i) {
          const int tok = i * 8 + g;
          xb[p][i] = (valid && tok < m)
                         ? __ldg(reinterpret_cast<const uint4*>(
                               x + ((static_cast<int64_t>(p) * m + tok) * k + kk + 8 * u)))
                         : make_uint4(0, 0, 0, 0);
        }
      }
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const uint32_t a[4] = {h0[2 * half], h1[2 * half], h0[2 * half + 1], h1[2 * half + 1]};
#pragma unroll
        for (int p = 0; p < PATHS; ++p) {
#pragma unroll
          for (int i = 0; i < NT; ++i) {
            mma16816(acc[i], a, comp(xb[p][i], 2 * half), comp(xb[p][i], 2 * half + 1));
          }
        }
      }
    }
    cur = nxt;
  }

#pragma unroll
  for (int i = 0; i < NT; ++i) {
#pragma unroll
    for (int c = 0; c < 4; ++c) red[warp][i][c][lane] = acc[i][c];
  }
  __syncthreads();
  if (warp != 0) return;
  const float scale = *sx * *sw * 16384.0f;  // 2^14 undoes the decode's subnormal placement
#pragma unroll
  for (int i = 0; i < NT; ++i) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      float v = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) v += red[w][i][c][lane];
      const int64_t row = row_base + g + (c >= 2 ? 8 : 0);
      const int tok = i * 8 + 2 * t + (c & 1);
      if (row < n && tok < m) y[tok * n + row] = __float2bfloat16_rn(v * scale);
    }
  }
}

template <int NT, int PATHS>
void launch(const uint16_t* x, const float* sx, int64_t m, const Nvfp4View& w, int group,
            int64_t n, int64_t k, uint16_t* y, cudaStream_t stream) {
  const unsigned grid = static_cast<unsigned>((n + 15) / 16);
  auto* xh = reinterpret_cast<const __half*>(x);
  auto* yb = reinterpret_cast<__nv_bfloat16*>(y);
  if (group == 32) {
    gemm_decode_mma_kernel<NT, PATHS, 32><<<grid, kWarps * 32, 0, stream>>>(
        xh, sx, static_cast<int>(m), w.codes, w.scales, w.tensor_scale, n, k, yb);
  } else {
    gemm_decode_mma_kernel<NT, PATHS, 16><<<grid, kWarps * 32, 0, stream>>>(
        xh, sx, static_cast<int>(m), w.codes, w.scales, w.tensor_scale, n, k, yb);
  }
  check(cudaGetLastError(), "gemm_decode_mma_kernel");
}

template <int PATHS>
void dispatch(const uint16_t* x, const float* sx, int64_t m, const Nvfp4View& w, int group,
              int64_t n, int64_t k, uint16_t* y, cudaStream_t stream) {
  if (m <= 8) return launch<1, PATHS>(x, sx, m, w, group, n, k, y, stream);
  if (m <= 16) return launch<2, PATHS>(x, sx, m, w, group, n, k, y, stream);
  return launch<4, PATHS>(x, sx, m, w, group, n, k, y, stream);
}

}  // namespace

void gemm_decode_mma(const uint16_t* x_gemm_f16, int paths, const float* x_tensor_scale, int64_t m,
                     const Nvfp4View& w, int w_group, int64_t n, int64_t k, uint16_t* y,
                     cudaStream_t stream) {
  if (m < 1 || m > 32)
    throw Error("cuda::gemm_decode_mma: M = " + std::to_string(m) + " is outside 1..32");
  if (k <= 0 || k % 64 != 0 || n <= 0)
    throw Error("cuda::gemm_decode_mma: bad shape N x K = " + shape_str(n, k));
  if (w_group != 16 && w_group != 32)
    throw Error("cuda::gemm_decode_mma: weight group must be 16 or 32");
  if (paths == 2) return dispatch<2>(x_gemm_f16, x_tensor_scale, m, w, w_group, n, k, y, stream);
  if (paths == 1) return dispatch<1>(x_gemm_f16, x_tensor_scale, m, w, w_group, n, k, y, stream);
  throw Error("cuda::gemm_decode_mma: paths must be 1 or 2");
}

}  // namespace sharq::cuda
