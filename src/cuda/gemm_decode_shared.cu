// Decode-regime GEMM for the batched rows (built for M = 9..32): the same FP4 weight windows,
// decode and mma.sync m16n8k16 as gemm_decode_mma.cu, but the warps of a block own different
// weight tiles and walk K together, so each 128-wide activation window is copied once into
// shared memory (cp.async, a ring of kStages windows) and read by all the warps of the block.
// Why: in gemm_decode_mma every warp reads the whole activation for its own 16 rows; at M = 16
// that is 8x the weight bytes from L2 (4096x28672: 470 MB of L2 reads for 62 MB of weights) and
// the GEMM ran slower than cuBLAS BF16. Short grids (the 4096- and 6144-row products) split K
// across the blocks of a thread-block cluster, whose partial sums are added in rank order through
// distributed shared memory (deterministic, no workspace, no atomics).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "cp_async.cuh"
#include "decode_mma_tiles.cuh"
#include "decode_split_k.cuh"
#include "device_info.cuh"
#include "fp4_decode.cuh"
#include "launch.cuh"
#include "sharq/cuda/kernels.h"
#include "sharq/error.h"

namespace sharq::cuda::decode_mma {
namespace {

// Warps per block: 8, so each staged window feeds 8 tiles. 4 (two blocks per SM where a thread
// needs more than 128 registers) measured slower on an H100: gate/up at M = 32 101.9 vs 83.9 us.
constexpr int kWarps = kSplitWarps;

constexpr int kStages = 3;  // activation windows in the shared ring

// uint4s of one activation window: 4 u x P paths x NT token tiles x 32 lanes.
template <int NT, int P>
__host__ __device__ constexpr int window_chunks() {
  return 4 * P * NT * 32;
}

// Copies window w of x (P, m, k) into `slot` in lane order: chunk ((u * P + p) * NT + i) * 32 +
// lane holds lane (g, t)'s 8 FP16 of token 8i + g, path p, K [32t + 8u, +8) of the window, the
// B-fragment pair the lane multiplies for u. A warp's read for one (u, p, i) is then 512
// contiguous bytes (no bank conflicts). Tokens past m and K past k read as zeros.
// One warp instruction copies two whole token rows (2 x 256 contiguous bytes: every K chunk of
// tokens 8i + 2r and 8i + 2r + 1, r = item mod 4), lane L taking u = L / 8, so each quarter warp
// writes 8 consecutive chunks (128 bytes, one wavefront). The first mapping walked the source rows
// in lane order, and a quarter warp's writes fell 4 KB apart: ncu (H200, M = 32) counted 32
// wavefronts a copy instruction against 4 ideal. Removing that conflict measured neutral in time
// (session 19), but the kernels need fewer registers (the M = 32 one-tile build no longer spills).
template <int NT, int P>
__device__ __forceinline__ void copy_window(uint4* slot, const __half* __restrict__ x, int m,
                                            int64_t k, int64_t w) {
  constexpr int kItems = P * NT * 4;  // (path, token tile, token pair) per warp instruction
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int u = lane >> 3, t = lane & 3, g2 = (lane >> 2) & 1;
  const int64_t kk = w * kWin + 32 * t + 8 * u;
#pragma unroll
  for (int j0 = 0; j0 < kItems; j0 += kWarps) {
    const int j = j0 + warp;
    if (kItems % kWarps != 0 && j >= kItems) break;
    const int p = j / (NT * 4), i = (j >> 2) % NT, g = 2 * (j & 3) + g2, tok = 8 * i + g;
    const bool valid = tok < m && kk < k;
    const __half* src = valid ? x + ((static_cast<int64_t>(p) * m + tok) * k + kk) : x;
    cp_async16(smem_u32(slot + ((u * P + p) * NT + i) * 32 + g * 4 + t), src, valid ? 16 : 0);
  }
}

// One window of one warp: its weight slice decoded once per sub-tile and multiplied by every
// activation fragment of the window, read from the shared slot a quarter window (u) at a time
// (32 registers at M = 32 instead of the 128 a whole window would hold).
template <int NT, int P, int RT>
__device__ __forceinline__ void window_mma_shared(float (&acc)[RT][NT][4],
                                                  const WeightSlice<RT>& sl, const uint4* slot,
                                                  int lane) {
  __half2 sc[RT][2][2];
#pragma unroll
  for (int st = 0; st < RT; ++st) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      sc[st][r][0] = scale_h2(sl.s[st][r][0]);
      sc[st][r][1] = scale_h2(sl.s[st][r][1]);
    }
  }
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    uint4 xv[P][NT];
#pragma unroll
    for (int p = 0; p < P; ++p) {
#pragma unroll
      for (int i = 0; i < NT; ++i) xv[p][i] = slot[((u * P + p) * NT + i) * 32 + lane];
    }
    uint32_t h[RT][2][4];  // [sub-tile][rows g, g + 8]: the u-th 8 codes, scaled FP16 pairs
#pragma unroll
    for (int st = 0; st < RT; ++st) {
#pragma unroll
      for (int r = 0; r < 2; ++r) scaled_pairs(sl, st, r, u, sc[st][r][u >> 1], h[st][r]);
    }
    // Sub-tiles inside the path loop: consecutive MMAs go to RT * NT different accumulators
    // (each accumulator sees the same order as with sub-tiles outermost, so the same bits).
    // Measured neutral on an H100 (gate/up at M = 32 77.5 vs 77.7 us) but it spills less.
#pragma unroll
    for (int half = 0; half < 2; ++half) {
#pragma unroll
      for (int p = 0; p < P; ++p) {
#pragma unroll
        for (int st = 0; st < RT; ++st) {
          const uint32_t a[4] = {h[st][0][2 * half], h[st][1][2 * half], h[st][0][2 * half + 1],
                                 h[st][1][2 * half + 1]};
#pragma unroll
          for (int i = 0; i < NT; ++i) {
            mma16816(acc[st][i], a, comp(xv[p][i], 2 * half), comp(xv[p][i], 2 * half + 1));
          }
        }
      }
    }
  }
}

// 16 warps per SM (<= 128 registers) except at M > 16 with two tiles per warp, whose
// accumulators and weight ring need more (it spilled ~900 bytes a thread at 128): 8 warps.
template <int NT, int RT>
constexpr int min_blocks() {
  return NT * RT >= 8 ? 1 : 2;
}

// Grid (tile groups, split_k), cluster (1, split_k): block (b, c) runs warp w on tile
// b * kWarps + w over the c-th share of K's windows. x: (P, m, k) FP16 as gemm_decode_mma's.
template <int NT, int P, int WG, int RT, typename OutT>
__global__ void __launch_bounds__(kWarps * 32, min_blocks<NT, RT>())
    gemm_decode_shared_kernel(const __half* __restrict__ x, const float* __restrict__ sx, int m,
                              const __grid_constant__ Parts<OutT> parts, int64_t k, int64_t tiles) {
  constexpr int kDepth = RT == 1 ? 3 : 2;  // weight windows in each warp's register ring
  extern __shared__ uint4 smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int64_t tile = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const bool active = tile < tiles;  // idle warps still copy and meet every barrier
  const TileRef<OutT> tr = tile_ref<RT>(parts, active ? tile : tiles - 1);
  const uint8_t* __restrict__ wcodes = tr.codes;
  const uint8_t* __restrict__ wscales = tr.scales;
  int64_t rows[RT][2];
  tile_rows<RT>(tr, g, rows);
  const int64_t nwin = (k + kWin - 1) / kWin;
  const int64_t w0 = nwin * blockIdx.y / gridDim.y, nw = nwin * (blockIdx.y + 1) / gridDim.y - w0;

  float acc[RT][NT][4] = {};
  auto slot = [&](int64_t j) { return smem + (j % kStages) * window_chunks<NT, P>(); };
  auto load_w = [&](WeightSlice<RT>& sl, int64_t j) {
    if (!active || j >= nw) return;
    const int64_t kl = (w0 + j) * kWin + 32 * t;
    load_slice<WG>(sl, wcodes, wscales, rows, tr.n, k, kl, kl < k);
  };
  // j < nw is the same in every warp of the block, so the barrier inside is reached by all.
  auto step = [&](WeightSlice<RT>& sl, int64_t j) {
    if (j >= nw) return;
    cp_async_wait<kStages - 2>();  // this thread's copies of window j have landed ...
    __syncthreads();  // ... everyone's have, and every warp is done with window j - 1's slot
    if (j + kStages - 1 < nw)
      copy_window<NT, P>(slot(j + kStages - 1), x, m, k, w0 + j + kStages - 1);
    cp_async_commit();  // one group per step, empty or not, so the wait count stays exact
    if (active) window_mma_shared<NT, P, RT>(acc, sl, slot(j), lane);
    load_w(sl, j + kDepth);
  };

  // The weights are constant: their first windows load before the wait for the kernel that
  // writes x (programmatic dependent launch; a no-op without it).
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  WeightSlice<RT> s0, s1, s2;
  load_w(s0, 0);
  load_w(s1, 1);
  if (kDepth == 3) load_w(s2, 2);
  asm volatile("griddepcontrol.wait;" ::: "memory");
#pragma unroll
  for (int j = 0; j < kStages - 1; ++j) {
    if (j < nw) copy_window<NT, P>(slot(j), x, m, k, w0 + j);
    cp_async_commit();
  }
  for (int64_t j = 0; j < nw; j += kDepth) {
    step(s0, j);
    step(s1, j + 1);
    if (kDepth == 3) step(s2, j + 2);
  }

  store_or_reduce<NT, RT>(acc, tr, active, sx, m, parts.accumulate, smem);
}

template <int NT, int P, int RT>
constexpr size_t smem_bytes() {
  return std::max<size_t>(size_t(kStages) * window_chunks<NT, P>() * 16, split_k_bytes<NT, RT>());
}

template <int NT, int P, int RT, typename OutT>
void launch_nt(const uint16_t* x, const float* sx, int64_t m, Parts<OutT> parts, int group,
               int split_k, int64_t k, cudaStream_t stream) {
  for (int i = 0; i < parts.count; ++i) {
    parts.tile0[i + 1] = parts.tile0[i] + (parts.n[i] + 16 * RT - 1) / (16 * RT);
  }
  const int64_t tiles = parts.tile0[parts.count];
  const int64_t groups = (tiles + kWarps - 1) / kWarps;
  constexpr auto kernel32 = gemm_decode_shared_kernel<NT, P, 32, RT, OutT>;
  constexpr auto kernel16 = gemm_decode_shared_kernel<NT, P, 16, RT, OutT>;
  const auto kernel = group == 32 ? kernel32 : kernel16;
  constexpr size_t smem = smem_bytes<NT, P, RT>();
  const int resident =
      group == 32 ? resident_blocks_smem<kernel32, kWarps * 32, smem>("gemm_decode_shared smem")
                  : resident_blocks_smem<kernel16, kWarps * 32, smem>("gemm_decode_shared smem");
  launch_split_k(kernel, resident, groups, k, split_k, m, smem, stream, "gemm_decode_shared_kernel",
                 reinterpret_cast<const __half*>(x), sx, static_cast<int>(m),
                 static_cast<const Parts<OutT>>(parts), k, tiles);
}

}  // namespace

template <int PATHS, typename OutT>
void launch_shared_x(const uint16_t* x, const float* sx, int64_t m, Parts<OutT> parts, int group,
                     int rt, int split_k, int64_t k, cudaStream_t stream) {
  if (m <= 8) {
    return rt == 2 ? launch_nt<1, PATHS, 2>(x, sx, m, parts, group, split_k, k, stream)
                   : launch_nt<1, PATHS, 1>(x, sx, m, parts, group, split_k, k, stream);
  }
  if (m <= 16) {
    return rt == 2 ? launch_nt<2, PATHS, 2>(x, sx, m, parts, group, split_k, k, stream)
                   : launch_nt<2, PATHS, 1>(x, sx, m, parts, group, split_k, k, stream);
  }
  return rt == 2 ? launch_nt<4, PATHS, 2>(x, sx, m, parts, group, split_k, k, stream)
                 : launch_nt<4, PATHS, 1>(x, sx, m, parts, group, split_k, k, stream);
}

template void launch_shared_x<1, float>(const uint16_t*, const float*, int64_t, Parts<float>, int,
                                        int, int, int64_t, cudaStream_t);
template void launch_shared_x<2, float>(const uint16_t*, const float*, int64_t, Parts<float>, int,
                                        int, int, int64_t, cudaStream_t);
template void launch_shared_x<1, __nv_bfloat16>(const uint16_t*, const float*, int64_t,
                                                Parts<__nv_bfloat16>, int, int, int, int64_t,
                                                cudaStream_t);
template void launch_shared_x<2, __nv_bfloat16>(const uint16_t*, const float*, int64_t,
                                                Parts<__nv_bfloat16>, int, int, int, int64_t,
                                                cudaStream_t);

}  // namespace sharq::cuda::decode_mma
