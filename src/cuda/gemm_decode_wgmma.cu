// Decode-regime GEMM for batched rows on wgmma (built for M = 9..32): the tile per warp, the FP4
// weight windows and their decode are gemm_decode_shared.cu's, but each warpgroup's four tiles
// (64 weight rows) are one asynchronous m64nNk16 product with the decoded weight as the register
// A operand and the activation (N = 8 NT tokens) as the shared-memory B operand.
// Why: the mma.sync kernel reads every activation fragment from shared memory once per 16 weight
// rows (at M = 32 that is 16x the weight bytes) and issues its MMAs between the decodes, one warp
// at a time; ncu put it at 21% of the tensor pipe and 19% of DRAM at M = 32, bound by latency
// (docs/RESULTS.md, issue 5, session 6). A wgmma reads the activation once per 64 rows, runs
// while the warp decodes the next window, and the accumulators shrink to N / 2 registers.
// History: from planes in the kMma order (sessions 17-19) it was correct but 1.2-1.7x slower than
// the mma.sync kernels: its window copies gathered 4-byte pairs into the K order below. The
// prepare now writes the planes in that order (kernels.h PlaneOrder::kWgmma, rows padded to whole
// windows), a window copy is whole 16-byte chunks, and the engine runs this kernel above 8 rows
// (decode_plane_order); on an H200 it beat the mma.sync kernels on every product at 17-32 rows and
// on most at 16; at 4 and 8 rows its 8-token MMAs lose (docs/RESULTS.md, issue 5, session 20).
//
// The K order: a lane's A fragment holds the pairs its 16 code bytes decode to (fp4_decode.cuh:
// planes and codes share the 0,4,1,5,.. order inside each 8-group, so pair j of word u is K'
// 32 t + 8 u + 2 j, + 1 in the kMma order K'). MMA step s = 2 u + h of a 128-wide window takes
// from lane t the pairs K' 32 t + 8 u + 4 h (+0, +1) as its K slots 2 t (+1) and K' 32 t + 8 u +
// 4 h + 2 (+0, +1) as slots 8 + 2 t (+1), so the pair (K' 32 t + 8 u + 2 q) belongs in window
// K-slot 16 (2 u + q / 2) + 8 (q % 2) + 2 t, i.e. 128-byte row half u / 2, 16-byte chunk
// 4 (u % 2) + q, bytes 4 t (then swizzled). The kWgmma planes hold each window in that slot order.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "cp_async.cuh"
#include "decode_mma_tiles.cuh"
#include "decode_split_k.cuh"
#include "fp4_decode.cuh"
#include "sharq/cuda/kernels.h"
#include "wgmma_sp.cuh"

namespace sharq::cuda::decode_mma {
namespace {

using sm90::fence_acc;
using sm90::fence_proxy_async;
using sm90::smem_desc;
using sm90::wgmma_commit;
using sm90::wgmma_fence;
using sm90::wgmma_wait;

// SHARQ_CUDA_WGMMA_NOFENCE=1 (dev ablation, timing only): the kernel skips the proxy fence
// between its cp.async writes and wgmma's reads, which PTX requires, so its results are not
// guaranteed. It measures what the fence (a MEMBAR.ALL.CTA in SASS) costs: 1-3% (session 17).
const bool g_no_fence = [] {
  const char* e = std::getenv("SHARQ_CUDA_WGMMA_NOFENCE");
  return e && e[0] == '1';
}();

constexpr int kWarps = kSplitWarps;  // two warpgroups
constexpr int kAhead = 2;            // activation windows in flight ahead of the one in use
constexpr int kStages = kAhead + 2;  // + the one in use + the one the previous MMAs may still read
constexpr int kSets = 2;             // accumulator sets: two dependency chains of MMAs, not one
// Weight windows in each warp's register ring (even: the fragment buffers alternate). With one
// block of 8 warps an SM, the ring is the SM's weight bytes in flight: 2 windows (16 KB an SM)
// measured 5-10% slower than 4 on an H100 (docs/RESULTS.md, issue 5, session 17).
constexpr int kDepth = 4;
static_assert(
    kDepth == 4,
    "the loop below unrolls four steps; even, so fragment buffers and ring slots cycle together");
constexpr int kSteps = kWin / 16;  // k16 MMA steps per window

// Bytes of one window in shared memory: per path two 64-slot halves (128-byte rows, 128-byte
// swizzle) of N = 8 NT token rows. Every piece is a multiple of 1024 bytes, so each half stays
// aligned to the swizzle's 8-row atom.
template <int NT, int P>
__host__ __device__ constexpr uint32_t window_bytes() {
  return uint32_t(P) * 2 * NT * 8 * 128;
}

// A thread's share of every window copy, fixed for the launch (the planes are kWgmma-ordered, so
// a window is P x 2 x N half rows of 128 bytes that land whole in the slot, swizzled as wgmma
// reads them): item r = r * 256 + tid is 16-byte chunk c of half row ph of token row n; its
// source offset (halves from the window's start in path 0, row 0) and its destination offset in
// the slot. Precomputed once, so a window's copy is a pointer add and kR cp.async per thread.
template <int NT, int P>
struct RowCopy {
  static constexpr int N = NT * 8, kItems = P * 2 * N * 8;
  static constexpr int kR = (kItems + kWarps * 32 - 1) / (kWarps * 32);
  uint32_t src[kR], dst[kR];
  uint32_t real = 0, valid = 0;  // bit r: item r exists; and its token row is below m

  __device__ __forceinline__ RowCopy(int m, int64_t ld) {
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      const int i = r * kWarps * 32 + static_cast<int>(threadIdx.x);
      const int c = i & 7, n = (i >> 3) % N, ph = (i >> 3) / N, r8 = n & 7;
      src[r] = static_cast<uint32_t>((static_cast<int64_t>(ph >> 1) * m + n) * ld + 64 * (ph & 1) +
                                     8 * c);
      dst[r] = static_cast<uint32_t>(ph * (N * 128) + (n >> 3) * 1024 + r8 * 128 + ((c ^ r8) << 4));
      real |= static_cast<uint32_t>(i < kItems) << r;
      valid |= static_cast<uint32_t>(i < kItems && n < m) << r;
    }
  }
  // Window w of x into `slot`; tokens past m as zeros.
  __device__ __forceinline__ void copy(uint32_t slot, const __half* __restrict__ x,
                                       int64_t w) const {
    const __half* xw = x + w * kWin;
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      if (kItems % (kWarps * 32) != 0 && !((real >> r) & 1)) continue;
      const bool v = (valid >> r) & 1;
      cp_async16(slot + dst[r], v ? xw + src[r] : x, v ? 16 : 0);
    }
  }
};

// A lane's two weight rows (g, g + 8 of its tile; a clamped row stays in the tile) as streams
// over the tiled layout (weight_layout.h): full windows lie a whole tile (rows_in_tile x 64 code
// bytes) apart, so window w's codes and scale are the window-0 pointers plus w steps; only a last
// 64-wide window (k % 128 == 64) takes the layout's general formula (load_slice).
template <int WG>
struct RowStreams {
  const uint8_t* c[2];
  const uint8_t* s[2];
  uint32_t cstep, sstep;

  template <typename OutT>
  __device__ __forceinline__ RowStreams(const TileRef<OutT>& tr, const int64_t (&rows)[1][2],
                                        int64_t k, int t) {
    cstep = static_cast<uint32_t>(weight_layout::rows_in_tile(rows[0][0], tr.n) * 64);
    sstep = cstep * 2 / WG;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      // Window 0's offset; only used when full windows exist (k >= 128), so it is full too.
      const int64_t c0 = weight_layout::code_offset(rows[0][r], 32 * t, tr.n, k);
      c[r] = tr.codes + c0;
      s[r] = tr.scales + weight_layout::scale_of_code(c0, WG);
    }
  }
  __device__ __forceinline__ void load(WeightSlice<1>& sl, int64_t w) const {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      sl.q[0][r] = ld_no_l1(c[r] + w * cstep);
      const uint8_t* sp = s[r] + w * sstep;
      if (WG == 32) {
        sl.s[0][r][0] = sl.s[0][r][1] = __ldg(sp);
      } else {
        sl.s[0][r][0] = __ldg(sp);
        sl.s[0][r][1] = __ldg(sp + 1);
      }
    }
  }
};

// The A fragments of one window's eight MMA steps from a warp's weight slice (exact FP16 values
// E2M1 x UE4M3 x 2^-14, as the mma.sync kernels decode them).
__device__ __forceinline__ void decode_window(uint32_t (&a)[kSteps][4], const WeightSlice<1>& sl) {
  __half2 sc[2][2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    sc[r][0] = scale_h2(sl.s[0][r][0]);
    sc[r][1] = scale_h2(sl.s[0][r][1]);
  }
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    uint32_t h[2][4];
#pragma unroll
    for (int r = 0; r < 2; ++r) scaled_pairs(sl, 0, r, u, sc[r][u >> 1], h[r]);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      a[2 * u + half][0] = h[0][2 * half];
      a[2 * u + half][1] = h[1][2 * half];
      a[2 * u + half][2] = h[0][2 * half + 1];
      a[2 * u + half][3] = h[1][2 * half + 1];
    }
  }
}

// Grid (tile groups, split_k), cluster (1, split_k): block (b, c) runs warp w on tile
// b * kWarps + w over the c-th share of K's windows. x: (P, m, plane_row_halves(k, kWgmma)) FP16
// planes in the kWgmma order.
template <int NT, int P, int WG, typename OutT>
__global__ void __launch_bounds__(kWarps * 32, 1)
    gemm_decode_wgmma_kernel(const __half* __restrict__ x, const float* __restrict__ sx, int m,
                             const __grid_constant__ Parts<OutT> parts, int64_t k, int64_t tiles,
                             bool proxy_fence) {
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023);
  const uint32_t sbase = smem_u32(smem);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int64_t tile = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  // Idle warps (past the last tile) still take part in every MMA, on zero weights.
  const bool active = tile < tiles;
  const TileRef<OutT> tr = tile_ref<1>(parts, active ? tile : tiles - 1);
  int64_t rows[1][2];
  tile_rows<1>(tr, g, rows);
  const int64_t nwin = (k + kWin - 1) / kWin;
  const int64_t w0 = nwin * blockIdx.y / gridDim.y, nw = nwin * (blockIdx.y + 1) / gridDim.y - w0;

  // Window j sits in slot j % kStages; the main loop's steps are unrolled kDepth == kStages at a
  // time, so that slot is step B's own (a constant), and so is every MMA's descriptor: the base
  // descriptor plus a constant (the 14-bit address field cannot carry: shared memory ends below
  // 256 KB), not rebuilt from the address each time (6 uniform instructions an MMA).
  static_assert(kStages == kDepth, "step B's window sits in slot B");
  auto slot = [&](int idx) { return sbase + static_cast<uint32_t>(idx) * window_bytes<NT, P>(); };
  const uint64_t desc0 = smem_desc(sbase);
  const RowCopy<NT, P> rc(m, nwin * kWin);
  auto copy = [&](uint32_t dst, int64_t w) { rc.copy(dst, x, w); };
  const RowStreams<WG> rs(tr, rows, k, t);
  auto load_w = [&](WeightSlice<1>& sl, int64_t j) {
    if (j >= nw) return;
    const int64_t w = w0 + j;
    if (active && (w + 1) * kWin <= k) return rs.load(sl, w);
    const int64_t kl = w * kWin + 32 * t;  // a 64-wide last window, or an idle warp (zeros)
    load_slice<WG>(sl, tr.codes, tr.scales, rows, tr.n, k, kl, active && kl < k);
  };

  // Consecutive MMAs go to alternating sets: each accumulates into the previous one's registers
  // otherwise, and the chain of 8 P MMAs a window would run one after the other.
  float acc[kSets][NT * 4] = {};
  uint32_t a[2][kSteps][4];
  WeightSlice<1> ring[kDepth];  // windows j + 1 .. j + kDepth while window j runs
  auto fence_sets = [&] {
#pragma unroll
    for (int i = 0; i < kSets; ++i) fence_acc(acc[i]);
  };

  // Window j's MMAs run while the next window's fragments are decoded and the step after next's
  // barrier, copy and issue happen; each step waits only for the MMAs of the step before.
  // j < nw is the same in every warp of the block, so the barrier inside is reached by all.
  auto step = [&](auto b_tag, int64_t j) {
    constexpr int B = decltype(b_tag)::value, A = B % 2, R = (B + 1) % kDepth;
    if (j >= nw) return;
    cp_async_wait<kAhead - 1>();  // this thread's copies of window j have landed ...
    // ... are visible to the tensor cores (a MEMBAR.ALL.CTA in SASS; without it the kernel ran
    // only 1-3% faster on an H100, SHARQ_CUDA_WGMMA_NOFENCE=1) ...
    if (proxy_fence) fence_proxy_async();
    __syncthreads();  // ... and everyone's are; every warpgroup is done with window j - 2's slot
    if (j + kAhead < nw) copy(slot((B + kAhead) % kStages), w0 + j + kAhead);
    cp_async_commit();  // one group per step, empty or not, so the wait count stays exact
    fence_sets();
    wgmma_fence();
#pragma unroll
    for (int st = 0; st < kSteps; ++st) {
#pragma unroll
      for (int p = 0; p < P; ++p) {
        constexpr uint32_t kSlot = B * window_bytes<NT, P>();
        const uint32_t off = kSlot + (p * 2 + (st >> 2)) * (NT * 8 * 128) + (st & 3) * 32;
        sm90::wgmma_m64nNk16_rs<NT>(acc[(st + p) % kSets], a[A][st], desc0 + (off >> 4));
      }
    }
    wgmma_commit();
    wgmma_wait<1>();  // window j - 1's MMAs are done: its fragments and slot are free
    fence_sets();
    if (j + 1 < nw) {
      decode_window(a[1 - A], ring[R]);
      load_w(ring[R], j + 1 + kDepth);
    }
  };

  // The weights are constant: their first windows load before the wait for the kernel that
  // writes x (programmatic dependent launch; a no-op without it).
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#pragma unroll
  for (int i = 0; i < kDepth; ++i) load_w(ring[i], i);
  asm volatile("griddepcontrol.wait;" ::: "memory");
#pragma unroll
  for (int j = 0; j < kAhead; ++j) {
    if (j < nw) copy(slot(j), w0 + j);
    cp_async_commit();
  }
  static_assert(kStages * window_bytes<NT, P>() + 1024 <= 0x3FFFFu, "descriptor address field");
  decode_window(a[0], ring[0]);
  load_w(ring[0], kDepth);
  for (int64_t j = 0; j < nw; j += kDepth) {
    step(std::integral_constant<int, 0>{}, j);
    step(std::integral_constant<int, 1>{}, j + 1);
    step(std::integral_constant<int, 2>{}, j + 2);
    step(std::integral_constant<int, 3>{}, j + 3);
  }
  wgmma_wait<0>();
  fence_sets();

  float v[1][NT][4];
#pragma unroll
  for (int i = 0; i < NT; ++i) {
#pragma unroll
    for (int c = 0; c < 4; ++c) v[0][i][c] = acc[0][4 * i + c] + acc[1][4 * i + c];
  }
  store_or_reduce<NT, 1>(v, tr, active, sx, m, parts.accumulate, smem);
}

template <int NT, int P>
constexpr size_t smem_bytes() {
  return std::max<size_t>(size_t(kStages) * window_bytes<NT, P>(), split_k_bytes<NT, 1>()) + 1024;
}

template <int NT, int P, typename OutT>
void launch_nt(const uint16_t* x, const float* sx, int64_t m, Parts<OutT> parts, int group,
               int split_k, int64_t k, cudaStream_t stream) {
  for (int i = 0; i < parts.count; ++i) {
    parts.tile0[i + 1] = parts.tile0[i] + (parts.n[i] + 15) / 16;
  }
  const int64_t tiles = parts.tile0[parts.count];
  const int64_t groups = (tiles + kWarps - 1) / kWarps;
  constexpr auto kernel32 = gemm_decode_wgmma_kernel<NT, P, 32, OutT>;
  constexpr auto kernel16 = gemm_decode_wgmma_kernel<NT, P, 16, OutT>;
  const auto kernel = group == 32 ? kernel32 : kernel16;
  constexpr size_t smem = smem_bytes<NT, P>();
  const int resident =
      group == 32 ? resident_blocks_smem<kernel32, kWarps * 32, smem>("gemm_decode_wgmma smem")
                  : resident_blocks_smem<kernel16, kWarps * 32, smem>("gemm_decode_wgmma smem");
  launch_split_k(kernel, resident, groups, k, split_k, m, smem, stream, "gemm_decode_wgmma_kernel",
                 reinterpret_cast<const __half*>(x), sx, static_cast<int>(m),
                 static_cast<const Parts<OutT>>(parts), k, tiles, !g_no_fence);
}

}  // namespace

template <int PATHS, typename OutT>
void launch_wgmma_x(const uint16_t* x, const float* sx, int64_t m, Parts<OutT> parts, int group,
                    int split_k, int64_t k, cudaStream_t stream) {
  if (m <= 8) return launch_nt<1, PATHS>(x, sx, m, parts, group, split_k, k, stream);
  if (m <= 16) return launch_nt<2, PATHS>(x, sx, m, parts, group, split_k, k, stream);
  if (m <= 24) return launch_nt<3, PATHS>(x, sx, m, parts, group, split_k, k, stream);
  return launch_nt<4, PATHS>(x, sx, m, parts, group, split_k, k, stream);
}

template void launch_wgmma_x<1, float>(const uint16_t*, const float*, int64_t, Parts<float>, int,
                                       int, int64_t, cudaStream_t);
template void launch_wgmma_x<2, float>(const uint16_t*, const float*, int64_t, Parts<float>, int,
                                       int, int64_t, cudaStream_t);
template void launch_wgmma_x<1, __nv_bfloat16>(const uint16_t*, const float*, int64_t,
                                               Parts<__nv_bfloat16>, int, int, int64_t,
                                               cudaStream_t);
template void launch_wgmma_x<2, __nv_bfloat16>(const uint16_t*, const float*, int64_t,
                                               Parts<__nv_bfloat16>, int, int, int64_t,
                                               cudaStream_t);

}  // namespace sharq::cuda::decode_mma
