// Decode-regime GEMM (M <= 32), version 3: FP16 tensor cores (mma.sync m16n8k16, FP32
// accumulation). Weights stream from HBM once as FP4 codes + UE4M3 scales and are decoded once
// per element into FP16 registers; both SharQ paths (prepare()'s exact FP16 decodes of the
// backbone and of the residual) are multiplied by that same A fragment into the same
// accumulators. Not a prefill kernel: one 16-row weight tile per block, split-K over warps.
// Above 8 rows the launch goes to the shared-activation kernel (gemm_decode_shared.cu) where that
// measured faster (shared_x_tiles).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "decode_mma_tiles.cuh"
#include "decode_split_k.cuh"
#include "device_info.cuh"
#include "fp4_decode.cuh"
#include "launch.cuh"
#include "sharq/cuda/kernels.h"
#include "sharq/env_switch.h"
#include "sharq/error.h"

namespace sharq::cuda {
namespace {

using namespace decode_mma;

// Activations of one window for one lane: uint4 u of token (8i + g), path p, K [32t + 8u, +8).
template <int NT, int PATHS>
struct ActSlice {
  uint4 v[4][PATHS][NT];
};

// The lane's activation rows (plane, token) of every (path, token tile), found once: a window's
// loads then add kk to a row pointer instead of rebuilding (plane m + token) k + kk from the
// kernel parameters (the compiler reloaded them for every load under the register cap: about a
// tenth of the M <= 8 loop's instructions). A row past m is never read (live).
template <int NT, int PATHS, bool PACK>
struct ActRows {
  const __half* row[PATHS][NT];
  bool live[NT];

  __device__ __forceinline__ ActRows(const __half* x, int m, int64_t k, int g) {
#pragma unroll
    for (int i = 0; i < NT; ++i) {
      const int tok = PACK ? (g & 3) : i * 8 + g;
      live[i] = tok < m;
#pragma unroll
      for (int p = 0; p < PATHS; ++p) {
        const int64_t plane = PACK ? (g >> 2) : p;
        row[p][i] = x + (plane * m + (live[i] ? tok : 0)) * k;
      }
    }
  }
};

// PACK (two paths, M <= 4): one n8 tile holds both paths, column j = path j / 4, token j % 4,
// so one MMA serves both paths and the epilogue adds column pairs (j, j + 4).
// lo_here (two unpacked paths): whether the lane's 32-block of plane 1, the SharQ planes' lo, may
// be non-zero (its lo flag); where not, its loads are skipped (the zeros are what they would read).
template <int NT, int PATHS, bool PACK>
__device__ __forceinline__ void load_act(ActSlice<NT, PATHS>& a, const ActRows<NT, PATHS, PACK>& r,
                                         int64_t kk, bool valid, bool lo_here = true) {
#pragma unroll
  for (int p = 0; p < PATHS; ++p) {
#pragma unroll
    for (int i = 0; i < NT; ++i) {
      const uint4* src = reinterpret_cast<const uint4*>(r.row[p][i] + kk);
      const bool on = valid && r.live[i] && (lo_here || p == 0);
#pragma unroll
      for (int u = 0; u < 4; ++u) a.v[u][p][i] = on ? __ldg(src + u) : make_uint4(0, 0, 0, 0);
    }
  }
}

// The same loads with each address rebuilt from the parameters: for NT >= 2, where NT x PATHS
// row pointers held across the loop cost spills (ptxas's report, session 22).
template <int NT, int PATHS, bool PACK>
__device__ __forceinline__ void load_act(ActSlice<NT, PATHS>& a, const __half* __restrict__ x,
                                         int m, int64_t k, int64_t kk, bool valid, int g) {
#pragma unroll
  for (int u = 0; u < 4; ++u) {
#pragma unroll
    for (int p = 0; p < PATHS; ++p) {
#pragma unroll
      for (int i = 0; i < NT; ++i) {
        const int tok = PACK ? (g & 3) : i * 8 + g;
        const int64_t plane = PACK ? (g >> 2) : p;
        const uint4* src = reinterpret_cast<const uint4*>(x + ((plane * m + tok) * k + kk + 8 * u));
        a.v[u][p][i] = (valid && tok < m) ? __ldg(src) : make_uint4(0, 0, 0, 0);
      }
    }
  }
}

// One window of one lane: decode its two weight rows' 32 codes each (scaled, exact FP16) into
// A fragments and multiply them by every activation slice (both paths, every token tile).
// USE: the paths multiplied, P or 1 (plane 1, the SharQ planes' lo, zero in the whole window:
// its MMAs skipped; a separate instantiation, so that no branch splits the window's code).
template <int NT, int P, int RT, int USE = P>
__device__ __forceinline__ void window_mma(float (&acc)[RT][NT][4], const WeightSlice<RT>& sl,
                                           const ActSlice<NT, P>& xa) {
#pragma unroll
  for (int st = 0; st < RT; ++st) {
    const __half2 sc[2][2] = {{scale_h2(sl.s[st][0][0]), scale_h2(sl.s[st][0][1])},
                              {scale_h2(sl.s[st][1][0]), scale_h2(sl.s[st][1][1])}};
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      uint32_t h0[4], h1[4];
      scaled_pairs(sl, st, 0, u, sc[0][u >> 1], h0);
      scaled_pairs(sl, st, 1, u, sc[1][u >> 1], h1);
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const uint32_t a[4] = {h0[2 * half], h1[2 * half], h0[2 * half + 1], h1[2 * half + 1]};
#pragma unroll
        for (int p = 0; p < USE; ++p) {
#pragma unroll
          for (int i = 0; i < NT; ++i) {
            mma16816(acc[st][i], a, comp(xa.v[u][p][i], 2 * half),
                     comp(xa.v[u][p][i], 2 * half + 1));
          }
        }
      }
    }
  }
}

// x: (PATHS, m, k) FP16, GEMM order (prepare's gemm_f16). y: (m, n) bf16.
// Lane (g, t) owns weight rows g and g+8 of the tile and K elements [32t, 32t+32) of each window;
// the MMA's K order is permuted (pair (e, e+4) of each 8-group sits where the MMA expects
// (2t, 2t+1)) identically in A and B, which a dot product does not see.
// WARPS split K inside the block (more warps for short grids). Bytes in flight are what bound
// the first versions (~25-45% of the copy rate with one window prefetched): each warp keeps a
// ring of three weight windows, and a window's activation slices load one step ahead (during the
// previous window's math: 2.5-12% faster than loading them at the start of their own step, same
// call on an H100, session 5). Weight codes bypass L1 (read once), so the activation lines stay.
// Sums the WARPS partial accumulators of a tile (red[warp][i][c][lane]) and writes its outputs;
// run by one warp.
template <int NT, int WARPS, bool PACK, typename OutT>
__device__ __forceinline__ void tile_epilogue(const float (&red)[WARPS][NT][4][32],
                                              const TileRef<OutT>& r, int64_t row0, const float* sx,
                                              int m, bool accumulate, int lane) {
  float v[NT][4];
#pragma unroll
  for (int i = 0; i < NT; ++i) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      v[i][c] = 0.0f;
#pragma unroll
      for (int w = 0; w < WARPS; ++w) v[i][c] += red[w][i][c][lane];
    }
  }
  store_tile<NT, PACK>(v, r, row0, sx, m, accumulate, lane);
}

template <int NT, int PATHS, int WG, int WARPS, bool PACK, int RT, typename OutT>
__global__ void __launch_bounds__(WARPS * 32, 16 / WARPS)
    gemm_decode_mma_kernel(const __half* __restrict__ x, const float* __restrict__ sx, int m,
                           const __grid_constant__ Parts<OutT> parts, int64_t k) {
  // Weight windows per warp in the ring: three, two when each window holds two sub-tiles (the
  // same bytes in flight, fewer registers).
  constexpr int kDepth = RT == 1 ? 3 : 2;
  __shared__ float red[RT][WARPS][NT][4][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const TileRef<OutT> tr = tile_ref<RT>(parts, static_cast<int64_t>(blockIdx.x));
  const uint8_t* __restrict__ wcodes = tr.codes;
  const uint8_t* __restrict__ wscales = tr.scales;
  int64_t rows[RT][2];
  tile_rows<RT>(tr, g, rows);
  const int64_t nwin = (k + kWin - 1) / kWin;
  const LinearSlices<WG, RT> lin(tr, k, g, t);
  // NT == 1 (M <= 8) only: the wider token tiles run at the register cap, where holding the
  // linear bases (and ActRows' pointers) measured 2-3x the spill bytes in ptxas's report.
  auto fill = [&](WeightSlice<RT>& sl, int64_t w) {
    if (NT == 1 && lin.covers(w)) {
      lin.load(sl, w);
    } else {
      const int64_t kk = w * kWin + 32 * t;
      load_slice<WG>(sl, wcodes, wscales, rows, tr.n, k, kk, kk < k);
    }
  };

  float acc[RT][NT][4] = {};

  // kDepth weight slices in a ring, each refilled right after its math: the others' loads stay
  // in flight while one is decoded. Named slots, not an array indexed by a loop variable, and no
  // slot-to-slot copies: a copy of a register with a load pending would wait for it.
  // Loading a window's activations a step ahead keeps them live across the step: measured for
  // NT <= 2 (M <= 16); at NT = 4 the slices are 128 registers and already spill.
  constexpr bool kAhead = NT <= 2;
  ActSlice<NT, PACK ? 1 : PATHS> xa;
  const ActRows<NT, PACK ? 1 : PATHS, PACK> xrows(x, m, k, g);  // used for NT == 1
  // The SharQ planes' lo (plane 1) is zero almost everywhere (docs/merged_operand.md). With the
  // prepare's flags (parts.lo_flags) and two MMAs a k-step (M = 5..8), a lane skips its plane-1
  // loads where its 32-block's flag is clear, and the warp the window's plane-1 MMAs where every
  // lane's is. A window's flag loads one act ahead (lo_next); the first window reads lo. (At
  // M <= 4 one MMA serves both paths and the skip measured slower: session 32.)
  constexpr bool kLoSkip = NT == 1 && PATHS == 2 && !PACK;
  const uint8_t* lo_f = nullptr;  // this lane's flag of window 0 (block t of row g)
  uint32_t lo_next = 1;           // the next act's window: plane 1 may be non-zero in this lane
  if (kLoSkip && parts.lo_flags) {
    if (g < m) {
      lo_f = parts.lo_flags + int64_t{g} * (k / 32) + t;
    } else {
      lo_next = 0;  // a row past m reads nothing
    }
  }
  bool xa_lo = true;  // the window in xa: plane 1 may be non-zero in some lane (warp-uniform)
  auto act = [&](int64_t w) {
    const int64_t kk = w * kWin + 32 * t;
    if constexpr (kLoSkip) {
      const bool lo_here = lo_next != 0;
      const int64_t wn = w + WARPS;
      if (lo_f) lo_next = wn < nwin && wn * kWin + 32 * t < k ? __ldg(lo_f + 4 * wn) : 0u;
      load_act(xa, xrows, kk, kk < k, lo_here);
      xa_lo = __any_sync(0xffffffffu, lo_here);
    } else if constexpr (NT == 1) {
      load_act(xa, xrows, kk, kk < k);
    } else {
      load_act<NT, PACK ? 1 : PATHS, PACK>(xa, x, m, k, kk, kk < k, g);
    }
  };
  auto step = [&](WeightSlice<RT>& sl, int64_t w) {
    if (w >= nwin) return;
    if (!kAhead) act(w);
    if (kLoSkip && !xa_lo) {
      window_mma<NT, PACK ? 1 : PATHS, RT, 1>(acc, sl, xa);
    } else {
      window_mma<NT, PACK ? 1 : PATHS>(acc, sl, xa);
    }
    if (kAhead && w + WARPS < nwin) act(w + WARPS);  // the next step's window, a step ahead
    const int64_t wl = w + kDepth * WARPS;
    if (wl < nwin) fill(sl, wl);
  };
  WeightSlice<RT> s0, s1, s2;
  auto prime = [&](WeightSlice<RT>& sl, int64_t w) {
    if (w < nwin) fill(sl, w);
  };
  // Under programmatic dependent launch this block may start while the kernel that writes x
  // (the prepare, or the previous GEMM on the same input) still runs: the weights are constant,
  // so their first windows load now and x only after the wait (a no-op without PDL).
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  prime(s0, warp);
  prime(s1, warp + WARPS);
  if (kDepth == 3) prime(s2, warp + 2 * WARPS);
  asm volatile("griddepcontrol.wait;" ::: "memory");
  if (kAhead && warp < nwin) act(warp);
  for (int64_t w = warp; w < nwin; w += kDepth * WARPS) {
    step(s0, w);
    step(s1, w + WARPS);
    if (kDepth == 3) step(s2, w + 2 * WARPS);
  }

#pragma unroll
  for (int st = 0; st < RT; ++st) {
#pragma unroll
    for (int i = 0; i < NT; ++i) {
#pragma unroll
      for (int c = 0; c < 4; ++c) red[st][warp][i][c][lane] = acc[st][i][c];
    }
  }
  __syncthreads();
  if (warp < RT) {  // a warp per sub-tile
    tile_epilogue<NT, WARPS, PACK>(red[warp], tr, tr.row_base + 16 * warp, sx, m, parts.accumulate,
                                   lane);
  }
}

// M = 1 with both SharQ paths (the batch-1 decode step's products), g32 weights, K % 128 == 0 and
// every part's N % 16 == 0: one 16-row tile a block, eight warps splitting K, a ring of three
// weight windows a warp loaded before the dependency wait, weight addresses from one per-lane
// base (a tile's windows are 1 KB apart in the tiled layout, weight_layout.h). At 80 registers
// three 8-warp blocks share an SM (session 8: 82% of the copy rate at 4096 x 28672 on an H100).
// The weight scales apply after the products, not to every decoded FP16 pair (session 21; the
// kernel issues more instructions a window than the weight stream leaves time for on an H200,
// and the 32 pair multiplies were a sixth of them): lane t of a fragment holds its rows' 32-block
// t of each window, so one window's MMAs mix four scale groups, and the n8 tile's columns
// separate them. Column 4p + t' holds plane p's activation only in lane t''s K slots (zeros in
// the other lanes'): after a window's eight MMAs, D[row][4p + t'] is group t''s dot product alone
// and takes its scale in one FMA. M = 1's two paths times four groups fill the eight columns; the
// planes are in the scaled domain already. The sums round in another order than the general
// kernel's (CudaGemmDecodeM1 holds both to the float64 reference).
// MINB: blocks an SM the registers are sized for (3: at most 80 registers).
template <int MINB, typename OutT>
__global__ void __launch_bounds__(256, MINB)
    gemm_decode_m1_kernel(const __half* __restrict__ x, const float* __restrict__ sx,
                          const __grid_constant__ Parts<OutT> parts, int64_t k) {
  constexpr int kWarps = 8;
  __shared__ float red[kWarps][16];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const TileRef<OutT> tr = tile_ref<1>(parts, static_cast<int64_t>(blockIdx.x));
  // Windows count and address in 32 bits (m1_eligible: k <= 2^28, so w * 1024 < 2^32): one
  // IMAD.WIDE.U32 an address and one compare a bound, where 64-bit indices took four and two.
  const uint32_t nwin = static_cast<uint32_t>(k / kWin);
  const uint8_t* __restrict__ wc =
      tr.codes + (tr.row_base / 16) * int64_t{nwin} * 1024 + (g * 4 + t) * 16;
  // The accumulator's columns 2t and 2t + 1 are groups 2 (t & 1) and 2 (t & 1) + 1 (of path
  // t / 2): two adjacent scale bytes of each of the lane's rows.
  const uint8_t* __restrict__ ws =
      tr.scales + (tr.row_base / 16) * int64_t{nwin} * 64 + g * 4 + 2 * (t & 1);
  struct Window {
    uint4 q[2];     // rows g and g + 8: the lane's 32-block
    uint32_t s[2];  // rows g and g + 8: the scales of the lane's two columns
  };
  // Window w's loads; w < nwin. EARLY: before the dependency wait (ld_no_l1_early).
  auto fetch = [&](Window& ww, uint32_t w, auto early) {
    const uint8_t* c = wc + w * 1024u;
    const uint8_t* sc = ws + w * 64u;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      if constexpr (decltype(early)::value) {
        ww.q[h] = ld_no_l1_early(c + h * 512);
        ww.s[h] = ld_u16_early(sc + h * 32);
      } else {
        ww.q[h] = ld_no_l1(c + h * 512);
        ww.s[h] = __ldg(reinterpret_cast<const unsigned short*>(sc + h * 32));
      }
    }
  };
  auto load = [&](Window& ww, uint32_t w) {
    if (w >= nwin) return;
    fetch(ww, w, std::false_type{});
  };
  // As a B lane, column g is non-zero only when its group g % 4 is this lane's 32-block: the
  // other lanes' activation registers stay zero (their loads are predicated off).
  const bool b_active = (g & 3) == t;
  // The lane's activation slice as a 32-bit byte offset from x (k <= 2^28: below 2^31), opaque
  // to the compiler: the 64-bit pointer it replaced was rebuilt from the parameters every window
  // under the register cap (a dozen instructions a window; now three).
  uint32_t xoff;
  asm("mov.b32 %0, %1;" : "=r"(xoff) : "r"(static_cast<uint32_t>(((g >> 2) * k + 32 * t) * 2)));
  uint4 xa[4] = {};
  float tot[4] = {};
  auto step = [&](const Window& ww, uint32_t w) {
    if (w >= nwin) return;
    if (b_active) {
      const uint4* xw = reinterpret_cast<const uint4*>(reinterpret_cast<const char*>(x) +
                                                       (xoff + w * (2 * kWin)));
#pragma unroll
      for (int u = 0; u < 4; ++u) xa[u] = __ldg(xw + u);
    }
    float acc[4] = {};
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      uint32_t h0[4], h1[4];
      e2m1x8_stored_to_f16x2(comp(ww.q[0], u), h0);
      e2m1x8_stored_to_f16x2(comp(ww.q[1], u), h1);
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const uint32_t a[4] = {h0[2 * half], h1[2 * half], h0[2 * half + 1], h1[2 * half + 1]};
        mma16816(acc, a, comp(xa[u], 2 * half), comp(xa[u], 2 * half + 1));
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float2 sc = __half22float2(ue4m3x2_to_half2(ww.s[r]));
      tot[2 * r] = __fmaf_rn(sc.x, acc[2 * r], tot[2 * r]);
      tot[2 * r + 1] = __fmaf_rn(sc.y, acc[2 * r + 1], tot[2 * r + 1]);
    }
  };
  Window s0, s1, s2;
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  // The first three windows load unconditionally (clamped to the last window; a clamped one is
  // never stepped), so these loads stay ahead of the wait: written as conditional loads, ptxas
  // if-converted them and scheduled them after it (SASS of session 26's build: no weight load
  // before ACQBULK), so no product at M = 1 streamed its weights during the kernel before it.
  fetch(s0, min(static_cast<uint32_t>(warp), nwin - 1), std::true_type{});
  fetch(s1, min(static_cast<uint32_t>(warp + kWarps), nwin - 1), std::true_type{});
  fetch(s2, min(static_cast<uint32_t>(warp + 2 * kWarps), nwin - 1), std::true_type{});
  asm volatile("griddepcontrol.wait;" ::: "memory");
  for (uint32_t w = warp; w < nwin; w += 3 * kWarps) {
    step(s0, w);
    load(s0, w + 3 * kWarps);
    step(s1, w + kWarps);
    load(s1, w + 4 * kWarps);
    step(s2, w + 2 * kWarps);
    load(s2, w + 5 * kWarps);
  }
  // Rows g and g + 8: the lane's two columns, the four lanes' (all eight columns), then the
  // warps in order.
  float v[2] = {tot[0] + tot[1], tot[2] + tot[3]};
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    v[r] += __shfl_xor_sync(0xffffffffu, v[r], 1);
    v[r] += __shfl_xor_sync(0xffffffffu, v[r], 2);
  }
  if (t == 0) {
    red[warp][g] = v[0];
    red[warp][g + 8] = v[1];
  }
  __syncthreads();
  if (warp == 0 && lane < 16) {
    float y = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) y += red[w][lane];
    const float scale = *sx * *tr.sw * 16384.0f;  // 2^14 undoes the decode's subnormal placement
    store_out(tr.y, tr.row_base + lane, y * scale, parts.accumulate);
  }
}

// Programmatic dependent launch of the GEMM and of the decode step's other kernels (launch.cuh;
// testing::decode_gemm_pdl).
std::atomic<bool> g_pdl{switched_on("SHARQ_CUDA_PDL")};

// Row tiles per warp for M <= 8: 0 chosen per launch (row_tiles), 1 or 2 forced
// (SHARQ_CUDA_DECODE_RT, testing::decode_gemm_row_tiles).
std::atomic<int> g_rt{[] {
  const char* e = std::getenv("SHARQ_CUDA_DECODE_RT");
  return e && (e[0] == '1' || e[0] == '2') ? e[0] - '0' : 0;
}()};

// Two 16-row tiles per warp halve the activation reads per weight byte but halve the blocks too:
// measured on an H100 (same call, M = 1..8), q/k/v (6144 rows, 192 32-row tiles) 11.1 -> 8.4 us
// and gate/up (28672 rows) 51 -> 41 us at M = 8, but o and down (4096 rows, 128 tiles) 6.7 -> 7.9
// and 18.0 -> 25.2 us. So two where the 32-row tiles are at least 1.25 per SM.
template <typename OutT>
bool large_grid(const Parts<OutT>& parts) {
  int64_t tiles32 = 0;
  for (int i = 0; i < parts.count; ++i) tiles32 += (parts.n[i] + 31) / 32;
  return 4 * tiles32 >= 5 * int64_t(sm_count());
}
// Warps per block of the per-tile kernel: 0 chosen per launch (launch_w), 2, 4 or 8 forced
// (SHARQ_CUDA_DECODE_WARPS, testing::decode_gemm_warps).
std::atomic<int> g_warps{[] {
  const char* e = std::getenv("SHARQ_CUDA_DECODE_WARPS");
  return e && (e[0] == '2' || e[0] == '4' || e[0] == '8') ? e[0] - '0' : 0;
}()};

template <typename OutT>
int row_tiles(const Parts<OutT>& parts) {
  const int forced = g_rt.load(std::memory_order_relaxed);
  return forced != 0 ? forced : large_grid(parts) ? 2 : 1;
}

template <int NT, int PATHS, int WARPS, bool PACK, int RT, typename OutT>
void launch(const uint16_t* x, const float* sx, int64_t m, const Parts<OutT>& parts, int group,
            int64_t k, cudaStream_t stream) {
  const auto kernel = group == 32 ? gemm_decode_mma_kernel<NT, PATHS, 32, WARPS, PACK, RT, OutT>
                                  : gemm_decode_mma_kernel<NT, PATHS, 16, WARPS, PACK, RT, OutT>;
  launch_pdl(kernel, dim3(static_cast<unsigned>(parts.tile0[parts.count])), dim3(WARPS * 32), 0,
             stream, "gemm_decode_mma_kernel", reinterpret_cast<const __half*>(x), sx,
             static_cast<int>(m), parts, k);
}

// Warps per tile (they split K): the most of 8, 4, 2 whose grid (one block per tile) is
// resident in one wave, else 4. A grid just past one wave ends in a partial wave that leaves
// most SMs idle: ncu on an H100 measured 1.36 waves for N = 14336 with 4 warps (896 blocks, 660
// resident). One warp per tile (1792 tiles of N = 28672 in one wave) measured slower than
// 4 warps over 2.7 waves (39.4 vs 29.9 us): a lone warp's 3 windows in flight are too few.
template <int NT, int PATHS, bool PACK, int RT, typename OutT>
void launch_w(const uint16_t* x, const float* sx, int64_t m, Parts<OutT> parts, int group,
              int64_t k, cudaStream_t stream) {
  for (int i = 0; i < parts.count; ++i) {
    parts.tile0[i + 1] = parts.tile0[i] + (parts.n[i] + 16 * RT - 1) / (16 * RT);
  }
  const int64_t tiles = parts.tile0[parts.count];
  const auto fits = [&](auto warps) {
    constexpr int W = decltype(warps)::value;
    return tiles <= (group == 32
                         ? resident_blocks<gemm_decode_mma_kernel<NT, PATHS, 32, W, PACK, RT, OutT>,
                                           W * 32>()
                         : resident_blocks<gemm_decode_mma_kernel<NT, PATHS, 16, W, PACK, RT, OutT>,
                                           W * 32>());
  };
  if (fits(std::integral_constant<int, 8>{})) {
    return launch<NT, PATHS, 8, PACK, RT>(x, sx, m, parts, group, k, stream);
  }
  if (!fits(std::integral_constant<int, 4>{}) && fits(std::integral_constant<int, 2>{})) {
    return launch<NT, PATHS, 2, PACK, RT>(x, sx, m, parts, group, k, stream);
  }
  launch<NT, PATHS, 4, PACK, RT>(x, sx, m, parts, group, k, stream);
}

// The shared-activation kernel (gemm_decode_shared.cu): -1 chosen per launch (shared_x_tiles),
// 0 never, 1 for every M; 2 its wgmma form (gemm_decode_wgmma.cu) for every M, i.e.
// decode_plane_order answers kWgmma at every M (planes in the kMma order then run as under -1)
// (SHARQ_CUDA_DECODE_SHARED=0|1|2, testing::decode_gemm_shared_x).
// g_split_k: its K split (0 chosen per launch; SHARQ_CUDA_DECODE_SPLIT_K=1..8 for A/B,
// testing::decode_gemm_split_k).
std::atomic<int> g_shared{[] {
  const char* e = std::getenv("SHARQ_CUDA_DECODE_SHARED");
  return e && e[0] >= '0' && e[0] <= '2' ? e[0] - '0' : -1;
}()};
// decode_plane_order's rule: -1 per M, 0 always kMma, 1 always kWgmma (SHARQ_CUDA_DECODE_WGMMA,
// testing::decode_gemm_wgmma_order).
std::atomic<int> g_wgmma_order{[] {
  const char* e = std::getenv("SHARQ_CUDA_DECODE_WGMMA");
  return e && (e[0] == '0' || e[0] == '1') && e[1] == '\0' ? e[0] - '0' : -1;
}()};
// The rows above which the per-M rule answers kWgmma (SHARQ_CUDA_DECODE_WGMMA_ROWS=0..32, A/B).
const int64_t g_wgmma_rows = [] {
  const char* e = std::getenv("SHARQ_CUDA_DECODE_WGMMA_ROWS");
  const long v = e ? std::strtol(e, nullptr, 10) : -1;
  return v >= 0 && v <= 32 ? static_cast<int64_t>(v) : int64_t{8};
}();
std::atomic<int> g_split_k{[] {
  const char* e = std::getenv("SHARQ_CUDA_DECODE_SPLIT_K");
  return e && e[0] >= '1' && e[0] <= '8' && e[1] == '\0' ? e[0] - '0' : 0;
}()};

// Row tiles per warp of the shared-activation kernel, or 0 for the per-tile kernel. Measured on
// an H100 (sharq-nvfp4-24, same call, bench_gemm's kernel table): at M <= 8 the per-tile kernel
// wins everywhere (the shared one pays a barrier per window); above 8 rows the shared one with
// two tiles per warp wins where the grid is large (q/k/v 46.0 -> 31.1 us and gate/up 183.9 ->
// 80.0 at M = 32, 24.9 -> 16.8 and 85.4 -> 54.9 at M = 16), and on the 4096-row products only
// for the long-K down projection at M > 16 (87.0 -> 66.9 us, one tile per warp; o and M = 16
// stay per-tile: 25.7 vs 28.5, 13.5 vs 15.3, 40.7 vs 42.6 us). Since session 18's K split (one
// wave of clusters, any split up to 8) o at M > 16 also takes one tile per warp: on an H200,
// M = 32, 20.2 us split 7 ways against 25.9 per-tile.
template <typename OutT>
int shared_x_tiles(const Parts<OutT>& parts, int64_t m, int64_t k) {
  int mode = g_shared.load(std::memory_order_relaxed);
  if (mode == 2) mode = -1;
  if (mode == 0 || (mode == -1 && m <= 8)) return 0;
  if (mode == 1 || large_grid(parts)) return row_tiles(parts);
  const int forced = g_rt.load(std::memory_order_relaxed);
  if (m <= 16 || (split_rule_old() && k < 8192)) return 0;
  return forced != 0 ? forced : 1;
}

// The M = 1 kernel (SHARQ_CUDA_DECODE_M1, testing::decode_gemm_m1): 1 (default) sized per grid,
// for two blocks an SM where the tiles fit in two blocks an SM (o and down at 256 tiles), else
// for three (q/k/v, gate/up); 3 always three, 2 always two, 0 off. Session 8 measured each
// shape's better build this way; session 9 the engine: batch 1 277.7 / 281.7 / 282.0 tok/s
// against 271.2 / 275.8 / 273.6 with 3 (H100, one call, alternating; docs/RESULTS.md).
std::atomic<int> g_m1{[] {
  const char* e = std::getenv("SHARQ_CUDA_DECODE_M1");
  return e && e[0] >= '0' && e[0] <= '3' ? e[0] - '0' : 1;
}()};

// The M = 1 kernel's conditions; a forced row-tile or warp count (tests, probes) takes the
// general kernel instead.
template <typename OutT>
bool m1_eligible(const Parts<OutT>& parts, int paths, int64_t m, int group, int64_t k) {
  if (paths != 2 || m != 1 || group != 32 || k < kWin || k % kWin != 0 || k > (int64_t{1} << 28))
    return false;
  if (g_m1.load(std::memory_order_relaxed) == 0 || g_rt.load(std::memory_order_relaxed) != 0 ||
      g_warps.load(std::memory_order_relaxed) != 0)
    return false;
  for (int i = 0; i < parts.count; ++i) {
    if (parts.n[i] % 16 != 0) return false;
  }
  return true;
}

template <typename OutT>
void launch_m1(const uint16_t* x, const float* sx, Parts<OutT> parts, int64_t k,
               cudaStream_t stream) {
  for (int i = 0; i < parts.count; ++i) parts.tile0[i + 1] = parts.tile0[i] + parts.n[i] / 16;
  const int64_t tiles = parts.tile0[parts.count];
  const int mode = g_m1.load(std::memory_order_relaxed);
  const bool two = mode == 2 || (mode == 1 && tiles <= 2 * int64_t(sm_count()));
  const auto kernel = two ? gemm_decode_m1_kernel<2, OutT> : gemm_decode_m1_kernel<3, OutT>;
  launch_pdl(kernel, dim3(static_cast<unsigned>(tiles)), dim3(256), 0, stream,
             "gemm_decode_m1_kernel", reinterpret_cast<const __half*>(x), sx, parts, k);
}

template <int PATHS, typename OutT>
void dispatch(const uint16_t* x, const float* sx, int64_t m, const Parts<OutT>& parts, int group,
              int64_t k, PlaneOrder order, cudaStream_t stream) {
  if (order == PlaneOrder::kWgmma) {
    return launch_wgmma_x<PATHS>(x, sx, m, parts, group, g_split_k.load(std::memory_order_relaxed),
                                 k, stream);
  }
  if (m1_eligible(parts, PATHS, m, group, k)) return launch_m1(x, sx, parts, k, stream);
  if (const int srt = shared_x_tiles(parts, m, k)) {
    return launch_shared_x<PATHS>(x, sx, m, parts, group, srt,
                                  g_split_k.load(std::memory_order_relaxed), k, stream);
  }
  const bool rt2 = m <= 8 && row_tiles(parts) == 2;
  if (PATHS == 2 && m <= 4) {
    return rt2 ? launch_w<1, PATHS, true, 2>(x, sx, m, parts, group, k, stream)
               : launch_w<1, PATHS, true, 1>(x, sx, m, parts, group, k, stream);
  }
  if (m <= 8) {
    return rt2 ? launch_w<1, PATHS, false, 2>(x, sx, m, parts, group, k, stream)
               : launch_w<1, PATHS, false, 1>(x, sx, m, parts, group, k, stream);
  }
  if (m <= 16) return launch_w<2, PATHS, false, 1>(x, sx, m, parts, group, k, stream);
  return launch_w<4, PATHS, false, 1>(x, sx, m, parts, group, k, stream);
}

template <typename OutT>
void gemm_decode_mma_any(const uint16_t* x_gemm_f16, int paths, const float* x_tensor_scale,
                         int64_t m, const DecodeGemmPart* in, int count, int w_group, int64_t k,
                         OutT* (*out)(const DecodeGemmPart&), cudaStream_t stream, bool accumulate,
                         PlaneOrder order, const uint8_t* lo_flags) {
  if (m < 1 || m > 32)
    throw Error("cuda::gemm_decode_mma: M = " + std::to_string(m) + " is outside 1..32");
  if (count < 1 || count > kMaxParts)
    throw Error("cuda::gemm_decode_mma: " + std::to_string(count) + " parts (1.." +
                std::to_string(kMaxParts) + ")");
  if (w_group != 16 && w_group != 32)
    throw Error("cuda::gemm_decode_mma: weight group must be 16 or 32");
  if (order == PlaneOrder::kMmaRows)
    throw Error("cuda::gemm_decode_mma: kMmaRows planes are the merged prefill's operand");
  Parts<OutT> parts{};
  parts.count = count;
  parts.accumulate = accumulate;
  if (lo_flags && (paths != 2 || order != PlaneOrder::kMma))
    throw Error("cuda::gemm_decode_mma: lo_flags go with two paths' kMma planes");
  parts.lo_flags = lo_flags;
  int64_t rows = 0;
  for (int i = 0; i < count; ++i) {
    const int64_t n = in[i].n;
    if (k <= 0 || k % 64 != 0 || n <= 0)
      throw Error("cuda::gemm_decode_mma: bad shape N x K = " + shape_str(n, k));
    parts.codes[i] = in[i].w.codes;
    parts.scales[i] = in[i].w.scales;
    parts.sw[i] = in[i].w.tensor_scale;
    parts.y[i] = out(in[i]);
    parts.n[i] = n;
    rows += (n + 15) / 16;  // the 16-row tile count bounds every RT's
  }
  if (rows > 0x7fffffff) throw Error("cuda::gemm_decode_mma: too many output rows for one launch");
  // The wgmma kernel addresses its planes with 32-bit offsets.
  if (order == PlaneOrder::kWgmma && paths * m * plane_row_halves(k, order) > 0xffffffffLL)
    throw Error("cuda::gemm_decode_mma: planes of " + shape_str(m, k) +
                " are too large for the wgmma K order");
  if (paths == 2)
    return dispatch<2>(x_gemm_f16, x_tensor_scale, m, parts, w_group, k, order, stream);
  if (paths == 1)
    return dispatch<1>(x_gemm_f16, x_tensor_scale, m, parts, w_group, k, order, stream);
  throw Error("cuda::gemm_decode_mma: paths must be 1 or 2");
}

__nv_bfloat16* bf16_out(const DecodeGemmPart& p) {
  return static_cast<__nv_bfloat16*>(p.y);
}
float* f32_out(const DecodeGemmPart& p) {
  return static_cast<float*>(p.y);
}

}  // namespace

void gemm_decode_mma(const uint16_t* x_gemm_f16, int paths, const float* x_tensor_scale, int64_t m,
                     const Nvfp4View& w, int w_group, int64_t n, int64_t k, uint16_t* y,
                     cudaStream_t stream, PlaneOrder order, const uint8_t* lo_flags) {
  const DecodeGemmPart part{w, n, y};
  gemm_decode_mma_any(x_gemm_f16, paths, x_tensor_scale, m, &part, 1, w_group, k, bf16_out, stream,
                      false, order, lo_flags);
}

void gemm_decode_mma_f32(const uint16_t* x_gemm_f16, int paths, const float* x_tensor_scale,
                         int64_t m, const Nvfp4View& w, int w_group, int64_t n, int64_t k, float* y,
                         cudaStream_t stream, PlaneOrder order, const uint8_t* lo_flags) {
  const DecodeGemmPart part{w, n, y};
  gemm_decode_mma_any(x_gemm_f16, paths, x_tensor_scale, m, &part, 1, w_group, k, f32_out, stream,
                      false, order, lo_flags);
}

void gemm_decode_mma_group_f32(const uint16_t* x_gemm_f16, int paths, const float* x_tensor_scale,
                               int64_t m, const DecodeGemmPart* parts, int count, int w_group,
                               int64_t k, cudaStream_t stream, bool accumulate, PlaneOrder order,
                               const uint8_t* lo_flags) {
  gemm_decode_mma_any(x_gemm_f16, paths, x_tensor_scale, m, parts, count, w_group, k, f32_out,
                      stream, accumulate, order, lo_flags);
}

// Measured on an H200 (session 20, the engine's decode, sharq-nvfp4-24, two alternating runs in
// one call): kWgmma above 8 rows ran batch 16 at 2091 / 2146 tok/s against 2000 / 2047 above 16;
// above 3 rows, batches 4 and 8 lost 24% and 10% (the 8-token MMAs of 1-8 rows). bench_gemm, M =
// 16: o 11.5 against 13.9 us, down 32.4 / 44.8, q/k/v 14.9 / 15.1, gate/up 51.1 / 50.1.
PlaneOrder decode_plane_order(int64_t m) {
  const int mode = g_wgmma_order.load(std::memory_order_relaxed);
  const int shared = g_shared.load(std::memory_order_relaxed);
  if (mode == 1 || (mode == -1 && shared == 2)) return PlaneOrder::kWgmma;
  if (mode == 0 || m <= g_wgmma_rows || m > 32 || shared != -1) return PlaneOrder::kMma;
  return PlaneOrder::kWgmma;
}

bool pdl_enabled() {
  return g_pdl.load(std::memory_order_relaxed);
}

namespace testing {
void decode_gemm_pdl(bool on) {
  g_pdl.store(on, std::memory_order_relaxed);
}
void decode_gemm_row_tiles(int rt) {
  g_rt.store(rt == 1 || rt == 2 ? rt : 0, std::memory_order_relaxed);
}
void decode_gemm_shared_x(int mode) {
  g_shared.store(mode >= 0 && mode <= 2 ? mode : -1, std::memory_order_relaxed);
}
void decode_gemm_m1(int mode) {
  g_m1.store(mode >= 0 && mode <= 3 ? mode : 1, std::memory_order_relaxed);
}
void decode_gemm_warps(int warps) {
  g_warps.store(warps == 2 || warps == 4 || warps == 8 ? warps : 0, std::memory_order_relaxed);
}
void decode_gemm_split_k(int split_k) {
  g_split_k.store(split_k > 0 ? split_k : 0, std::memory_order_relaxed);
}
void decode_gemm_wgmma_order(int mode) {
  g_wgmma_order.store(mode == 0 || mode == 1 ? mode : -1, std::memory_order_relaxed);
}
}  // namespace testing

}  // namespace sharq::cuda
