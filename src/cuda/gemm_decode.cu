// Decode-regime GEMMs (M <= 32). Version 1 (M > 4): CUDA cores, FP32 accumulation. Each warp
// streams the FP4 codes and scales of ROWS weight rows exactly once (16-byte loads: one lane = one
// 32-element block), decodes every weight element once and applies it to all M activation rows,
// which sit decoded (both SharQ paths summed) in shared memory, padded to avoid bank conflicts.
// Honest limit: at M >= 8 the FP32 FMAs, not HBM, bound this kernel (docs/cuda_kernels.md);
// the next rung is mma.sync / wgmma on BF16-decoded tiles.
#include <cuda_bf16.h>

#include <cstdint>

#include "codecs.cuh"
#include "device_info.cuh"
#include "sharq/cuda/kernels.h"
#include "sharq/cuda/weight_layout.h"
#include "sharq/error.h"

namespace sharq::cuda {
namespace {

// A code block's four words back in SPEC order (the tiled weights keep each word in the stored
// bit order, weight_layout.h): these kernels pick nibbles out one at a time.
__device__ __forceinline__ uint4 spec_words(uint4 q) {
  return make_uint4(weight_layout::spec_code_word(q.x), weight_layout::spec_code_word(q.y),
                    weight_layout::spec_code_word(q.z), weight_layout::spec_code_word(q.w));
}

constexpr int kWarps = 8;
constexpr int kChunk = 1024;      // K elements per shared-memory chunk (32 lanes x 32)
constexpr int kPadded = 32 * 33;  // one chunk of one activation row, +1 float per lane

// Epilogue shared by the CUDA-core kernels: sums each (row, m) partial over the warp's lanes and
// lane 0 writes bf16(sum * s_x * s_w) for the rows and activations that exist.
template <int MT, int ROWS>
__device__ __forceinline__ void store_rows(const float (&acc)[ROWS][MT], int lane, int m, int64_t n,
                                           int64_t row0, float scale, __nv_bfloat16* y) {
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
#pragma unroll
    for (int i = 0; i < MT; ++i) {
      float v = acc[r][i];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0 && i < m && row0 + r < n) y[i * n + row0 + r] = __float2bfloat16_rn(v * scale);
    }
  }
}

// Y (m, n) = sx * sw * X (m, k) . W (n, k)^T (W in the tiled layout). MT >= m rows of X (padding
// rows are zero).
template <int MT, int ROWS, int WGROUP>
__global__ void __launch_bounds__(kWarps * 32)
    gemm_decode_kernel(const float* __restrict__ x, const float* __restrict__ sx, int m,
                       const uint8_t* __restrict__ wcodes, const uint8_t* __restrict__ wscales,
                       const float* __restrict__ sw, int64_t n, int64_t k,
                       __nv_bfloat16* __restrict__ y) {
  extern __shared__ float xs[];  // [MT][kPadded]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t row0 = (static_cast<int64_t>(blockIdx.x) * kWarps + warp) * ROWS;
  float acc[ROWS][MT];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
#pragma unroll
    for (int i = 0; i < MT; ++i) acc[r][i] = 0.0f;
  }
  for (int64_t c0 = 0; c0 < k; c0 += kChunk) {
    const int len = static_cast<int>(k - c0 < kChunk ? k - c0 : kChunk);
    __syncthreads();
    for (int i = threadIdx.x; i < MT * kChunk; i += blockDim.x) {
      const int mi = i / kChunk, e = i % kChunk;
      const float v = (mi < m && e < len) ? x[mi * k + c0 + e] : 0.0f;
      xs[mi * kPadded + (e >> 5) * 33 + (e & 31)] = v;
    }
    __syncthreads();
    if (lane * 32 >= len) continue;
    const int64_t blk = (c0 >> 5) + lane;  // this lane's 32-element block along K
    uint4 q[ROWS];
    float s[ROWS][2];
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      const int64_t row = row0 + r < n ? row0 + r : n - 1;  // clamp: results dropped below
      const int64_t c = weight_layout::code_offset(row, 32 * blk, n, k);
      q[r] = spec_words(*reinterpret_cast<const uint4*>(wcodes + c));
      const uint8_t* sp = wscales + weight_layout::scale_of_code(c, WGROUP);
      s[r][0] = ue4m3_decode(sp[0]);
      s[r][1] = WGROUP == 32 ? s[r][0] : ue4m3_decode(sp[1]);
    }
    const float* xl = xs + lane * 33;
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      float xv[MT];
#pragma unroll
      for (int i = 0; i < MT; ++i) xv[i] = xl[i * kPadded + j];
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        const uint32_t word = j < 8 ? q[r].x : j < 16 ? q[r].y : j < 24 ? q[r].z : q[r].w;
        const float w = e2m1_decode((word >> (4 * (j & 7))) & 0xFu) * s[r][j >> 4];
#pragma unroll
        for (int i = 0; i < MT; ++i) acc[r][i] += w * xv[i];
      }
    }
  }
  store_rows<MT, ROWS>(acc, lane, m, n, row0, *sx * *sw, y);
}

// Version 2, used for M = 1: no shared memory and no block-wide barriers. Activations (at most
// 4 x K floats) are read through the read-only cache; each lane keeps UNROLL weight blocks of
// ROWS rows in flight before decoding, which is what v1 lacked (it sat at ~30% of HBM
// bandwidth at M = 1, latency-bound behind its per-chunk __syncthreads).
template <int MT, int ROWS, int WGROUP, int UNROLL>
__global__ void __launch_bounds__(128)
    gemm_decode_small_kernel(const float* __restrict__ x, const float* __restrict__ sx, int m,
                             const uint8_t* __restrict__ wcodes,
                             const uint8_t* __restrict__ wscales, const float* __restrict__ sw,
                             int64_t n, int64_t k, __nv_bfloat16* __restrict__ y) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t row0 = (static_cast<int64_t>(blockIdx.x) * 4 + warp) * ROWS;
  if (row0 >= n) return;
  const int64_t kb = k / 32;  // 32-element blocks per row
  float acc[ROWS][MT];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
#pragma unroll
    for (int i = 0; i < MT; ++i) acc[r][i] = 0.0f;
  }
  int64_t rows[ROWS];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) rows[r] = row0 + r < n ? row0 + r : n - 1;
  for (int64_t b0 = lane; b0 < kb; b0 += 32 * UNROLL) {
    uint4 q[UNROLL][ROWS];
    float s[UNROLL][ROWS][2];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int64_t b = b0 + 32 * u;
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        if (b < kb) {
          const int64_t c = weight_layout::code_offset(rows[r], 32 * b, n, k);
          q[u][r] = spec_words(__ldg(reinterpret_cast<const uint4*>(wcodes + c)));
          const uint8_t* sp = wscales + weight_layout::scale_of_code(c, WGROUP);
          s[u][r][0] = ue4m3_decode(__ldg(sp));
          s[u][r][1] = WGROUP == 32 ? s[u][r][0] : ue4m3_decode(__ldg(sp + 1));
        } else {
          q[u][r] = make_uint4(0, 0, 0, 0);
          s[u][r][0] = s[u][r][1] = 0.0f;
        }
      }
    }
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int64_t b = b0 + 32 * u;
      if (b >= kb) break;
#pragma unroll
      for (int j4 = 0; j4 < 8; ++j4) {
        float4 xv[MT];
#pragma unroll
        for (int i = 0; i < MT; ++i) {
          xv[i] = i < m ? __ldg(reinterpret_cast<const float4*>(x + i * k + b * 32) + j4)
                        : make_float4(0.f, 0.f, 0.f, 0.f);
        }
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
          const uint32_t word = j4 < 2   ? q[u][r].x
                                : j4 < 4 ? q[u][r].y
                                : j4 < 6 ? q[u][r].z
                                         : q[u][r].w;
          const float sc = s[u][r][j4 >> 2];
#pragma unroll
          for (int t = 0; t < 4; ++t) {
            const float w = e2m1_decode((word >> (4 * ((j4 & 1) * 4 + t))) & 0xFu) * sc;
#pragma unroll
            for (int i = 0; i < MT; ++i) {
              const float xi = t == 0 ? xv[i].x : t == 1 ? xv[i].y : t == 2 ? xv[i].z : xv[i].w;
              acc[r][i] += w * xi;
            }
          }
        }
      }
    }
  }
  store_rows<MT, ROWS>(acc, lane, m, n, row0, *sx * *sw, y);
}

template <int MT>
void launch_small(const float* x, const float* sx, int64_t m, const Nvfp4View& w, int group,
                  int64_t n, int64_t k, uint16_t* y, cudaStream_t stream) {
  constexpr int kRows = 2, kUnroll = 2;
  const unsigned grid = static_cast<unsigned>((n + 4 * kRows - 1) / (4 * kRows));
  auto* y16 = reinterpret_cast<__nv_bfloat16*>(y);
  if (group == 32) {
    gemm_decode_small_kernel<MT, kRows, 32, kUnroll><<<grid, 128, 0, stream>>>(
        x, sx, static_cast<int>(m), w.codes, w.scales, w.tensor_scale, n, k, y16);
  } else {
    gemm_decode_small_kernel<MT, kRows, 16, kUnroll><<<grid, 128, 0, stream>>>(
        x, sx, static_cast<int>(m), w.codes, w.scales, w.tensor_scale, n, k, y16);
  }
  check(cudaGetLastError(), "gemm_decode_small_kernel");
}

template <int MT, int ROWS>
void launch(const float* x, const float* sx, int64_t m, const Nvfp4View& w, int group, int64_t n,
            int64_t k, uint16_t* y, cudaStream_t stream) {
  constexpr size_t smem = sizeof(float) * MT * kPadded;
  const unsigned grid = static_cast<unsigned>((n + kWarps * ROWS - 1) / (kWarps * ROWS));
  auto* y16 = reinterpret_cast<__nv_bfloat16*>(y);
  if (group == 32) {
    auto kern = gemm_decode_kernel<MT, ROWS, 32>;
    opt_in_smem<gemm_decode_kernel<MT, ROWS, 32>, smem>("gemm_decode_kernel smem");
    kern<<<grid, kWarps * 32, smem, stream>>>(x, sx, static_cast<int>(m), w.codes, w.scales,
                                              w.tensor_scale, n, k, y16);
  } else {
    auto kern = gemm_decode_kernel<MT, ROWS, 16>;
    opt_in_smem<gemm_decode_kernel<MT, ROWS, 16>, smem>("gemm_decode_kernel smem");
    kern<<<grid, kWarps * 32, smem, stream>>>(x, sx, static_cast<int>(m), w.codes, w.scales,
                                              w.tensor_scale, n, k, y16);
  }
  check(cudaGetLastError(), "gemm_decode_kernel");
}

}  // namespace

void gemm_decode(const float* x_decoded, const float* x_tensor_scale, int64_t m, const Nvfp4View& w,
                 int w_group, int64_t n, int64_t k, uint16_t* y, cudaStream_t stream) {
  if (m < 1 || m > 32)
    throw Error("cuda::gemm_decode: M = " + std::to_string(m) + " is outside 1..32");
  if (k <= 0 || k % 64 != 0 || n <= 0)
    throw Error("cuda::gemm_decode: bad shape N x K = " + shape_str(n, k));
  if (w_group != 16 && w_group != 32)
    throw Error("cuda::gemm_decode: weight group must be 16 or 32");
  if (m <= 1) return launch_small<1>(x_decoded, x_tensor_scale, m, w, w_group, n, k, y, stream);
  // v2 lost to v1 at M = 2..4 on H100 (90 vs 44 us for 4096x6144, M = 4): v1 keeps them.
  if (m <= 2) return launch<2, 4>(x_decoded, x_tensor_scale, m, w, w_group, n, k, y, stream);
  if (m <= 4) return launch<4, 4>(x_decoded, x_tensor_scale, m, w, w_group, n, k, y, stream);
  if (m <= 8) return launch<8, 4>(x_decoded, x_tensor_scale, m, w, w_group, n, k, y, stream);
  if (m <= 16) return launch<16, 2>(x_decoded, x_tensor_scale, m, w, w_group, n, k, y, stream);
  // M in (16, 32]: two 16-row passes; one 32-row tile needs 135 KB of shared memory and ran
  // at a fraction of the 16-row speed (measured, docs/RESULTS.md).
  launch<16, 2>(x_decoded, x_tensor_scale, 16, w, w_group, n, k, y, stream);
  launch<16, 2>(x_decoded + 16 * k, x_tensor_scale, m - 16, w, w_group, n, k, y + 16 * n, stream);
}

}  // namespace sharq::cuda
