// Decode GEMM ladder (dev only, not built by CMake): does a tiled FP4 weight layout pay once the
// decode GEMM's math runs? decode_layout_probe.cu streamed the weights with no math: 86% of the
// copy rate row-major, +5% tiled. The real kernel reaches 45-67% at M = 1 (RESULTS.md), and
// session 7 found that the batch-1 step is now bound by these products, so this probe runs the
// library's exact per-window math (scaled FP16 pairs, mma.sync m16n8k16, both SharQ paths in one
// n8 tile, a ring of three weight windows, K split over the warps, a warp per tile's reduction
// through shared memory) on the same weights in two layouts:
//   row-major: today's (a lane reads a 16-byte piece of rows g and g + 8 per window; a tile's 16
//              rows are K/2 bytes apart);
//   tiled:     a tile's window stored as one 1 KB run of codes ([row half][g][t] 16-byte pieces)
//              and one 64-byte run of scales, so a warp's load is 512 contiguous bytes and a
//              block's whole stream is contiguous.
// A third variant feeds the tiled weights through a shared-memory ring of five windows per warp
// (cp.async.bulk copies completing on mbarriers, issued by one lane): more bytes in flight
// without registers. All variants must give the same bits (same operations in the same order);
// they are compared with the library's gemm_decode_mma (bf16, relative error printed: its warps
// and tiles per warp may differ, so its sums may round in another order).
// Prints us and % of a device copy for the four Llama-3.1-8B decode shapes at M = 1, next to
// the library's kernel. Not yet run (written in session 7 when the device time was spent).
// Build, after the library (build-cuda; -fmad=false as the library):
//   nvcc -std=c++20 -O3 -fmad=false -gencode=arch=compute_90a,code=sm_90a -Iinclude
//     dev/cuda/decode_tiled_math_probe.cu build-cuda/src/cuda/libsharq_cuda.a
//     build-cuda/src/libsharq_core.a -lcublas -o decode_tiled_math_probe
// then carry the binary to the device machine (LD_LIBRARY_PATH as in bench/e2e/device_run.sh).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "../../bench/cuda/bench_common.cuh"
#include "../../src/cuda/decode_mma_tiles.cuh"

namespace {

using namespace sharq::cuda::decode_mma;
using sharq::cuda::check;

constexpr int kWarps = 8;

// Lane (g, t)'s pieces of window w of 16-row tile `tile`: rows g and g + 8, K [32t, 32t + 32).
template <bool TILED>
__device__ __forceinline__ void load_window(WeightSlice<1>& sl, const uint8_t* __restrict__ codes,
                                            const uint8_t* __restrict__ scales, int64_t tile,
                                            int64_t k, int64_t nwin, int64_t w, int g, int t) {
  if (w >= nwin) return;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (TILED) {
      const int64_t base = (tile * nwin + w) * 2 + h;
      sl.q[0][h] = ld_no_l1(codes + base * 512 + (g * 4 + t) * 16);
      sl.s[0][h][0] = sl.s[0][h][1] = __ldg(scales + base * 32 + g * 4 + t);
    } else {
      const int64_t e = (tile * 16 + 8 * h + g) * k + w * kWin + 32 * t;
      sl.q[0][h] = ld_no_l1(codes + e / 2);
      sl.s[0][h][0] = sl.s[0][h][1] = __ldg(scales + e / 32);
    }
  }
}

// One window of lane (g, t), the library's math: the activation slices (lanes g = 0 and 4 hold
// token 0's backbone and residual columns, the library's packed operand at M = 1), the weight
// rows' scaled FP16 pairs, two mma.sync per 8-code step. x: prepare()'s planes (2, 1, k).
__device__ __forceinline__ void window_math(float (&acc)[4], const WeightSlice<1>& sl,
                                            const __half* __restrict__ x, int64_t k, int64_t w,
                                            int g, int t) {
  const __half* xp = x + (g >> 2) * k;
  const bool xlane = (g & 3) == 0;
  const int64_t kk = w * kWin + 32 * t;
  uint4 xa[4];
#pragma unroll
  for (int u = 0; u < 4; ++u)
    xa[u] = xlane ? __ldg(reinterpret_cast<const uint4*>(xp + kk + 8 * u)) : make_uint4(0, 0, 0, 0);
  const __half2 sc0 = scale_h2(sl.s[0][0][0]), sc1 = scale_h2(sl.s[0][1][0]);
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    uint32_t h0[4], h1[4];
    scaled_pairs(sl, 0, 0, u, sc0, h0);
    scaled_pairs(sl, 0, 1, u, sc1, h1);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const uint32_t a[4] = {h0[2 * half], h1[2 * half], h0[2 * half + 1], h1[2 * half + 1]};
      sharq::cuda::mma16816(acc, a, comp(xa[u], 2 * half), comp(xa[u], 2 * half + 1));
    }
  }
}

// The warps' partial sums added in warp order by warp 0, then the library's output write.
__device__ __forceinline__ void tile_out(const float (&acc)[4], float (&red)[kWarps][4][32],
                                         const uint8_t* codes, const uint8_t* scales,
                                         const float* sw, const float* sx, int64_t n,
                                         __nv_bfloat16* y) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t tile = blockIdx.x;
#pragma unroll
  for (int c = 0; c < 4; ++c) red[warp][c][lane] = acc[c];
  __syncthreads();
  if (warp == 0) {
    float v[1][4];
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      v[0][c] = 0.0f;
      for (int w = 0; w < kWarps; ++w) v[0][c] += red[w][c][lane];
    }
    const TileRef<__nv_bfloat16> r{codes, scales, sw, y, n, tile * 16};
    store_tile<1, true>(v, r, tile * 16, sx, 1, false, lane);
  }
}

// M = 1, two paths packed in one n8 tile (columns 0 and 4), g32 weights, N % 16 == 0, K % 128
// == 0. A ring of three weight windows per warp in registers, as the library.
template <bool TILED>
__global__ void __launch_bounds__(kWarps * 32, 2)
    probe_kernel(const __half* __restrict__ x, const float* __restrict__ sx,
                 const uint8_t* __restrict__ codes, const uint8_t* __restrict__ scales,
                 const float* __restrict__ sw, int64_t n, int64_t k, __nv_bfloat16* y) {
  __shared__ float red[kWarps][4][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int64_t tile = blockIdx.x, nwin = k / kWin;
  float acc[4] = {};
  WeightSlice<1> s0, s1, s2;
  load_window<TILED>(s0, codes, scales, tile, k, nwin, warp, g, t);
  load_window<TILED>(s1, codes, scales, tile, k, nwin, warp + kWarps, g, t);
  load_window<TILED>(s2, codes, scales, tile, k, nwin, warp + 2 * kWarps, g, t);
  for (int64_t w = warp; w < nwin; w += 3 * kWarps) {
    window_math(acc, s0, x, k, w, g, t);
    load_window<TILED>(s0, codes, scales, tile, k, nwin, w + 3 * kWarps, g, t);
    if (w + kWarps < nwin) window_math(acc, s1, x, k, w + kWarps, g, t);
    load_window<TILED>(s1, codes, scales, tile, k, nwin, w + 4 * kWarps, g, t);
    if (w + 2 * kWarps < nwin) window_math(acc, s2, x, k, w + 2 * kWarps, g, t);
    load_window<TILED>(s2, codes, scales, tile, k, nwin, w + 5 * kWarps, g, t);
  }
  tile_out(acc, red, codes, scales, sw, sx, n, y);
}

// Tiled weights through a ring of kSlots windows per warp in shared memory, each window one bulk
// copy of its 1 KB of codes and one of its 64 bytes of scales (cp.async.bulk, completion on a
// per-slot mbarrier), issued by lane 0: more windows in flight than registers allow, no
// register cost per window in flight.
constexpr int kSlots = 5;  // 8 warps x 5 x 1088 bytes: within the 48 KB of static shared memory
constexpr int kSlotBytes = 1024 + 64;

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void bulk_window(uint8_t* slot, uint64_t* bar,
                                            const uint8_t* __restrict__ codes,
                                            const uint8_t* __restrict__ scales, int64_t tile,
                                            int64_t nwin, int64_t w) {
  const int64_t base = tile * nwin + w;
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)),
               "r"(kSlotBytes)
               : "memory");
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], 1024, [%2];" ::
          "r"(smem_u32(slot)),
      "l"(codes + base * 1024), "r"(smem_u32(bar))
      : "memory");
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], 64, [%2];" ::
          "r"(smem_u32(slot + 1024)),
      "l"(scales + base * 64), "r"(smem_u32(bar))
      : "memory");
}
__device__ __forceinline__ void wait_parity(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n .reg .pred p;\n WAIT_%=:\n mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      " @!p bra WAIT_%=;\n}" ::"r"(smem_u32(bar)),
      "r"(parity)
      : "memory");
}

__global__ void __launch_bounds__(kWarps * 32, 2)
    probe_bulk_kernel(const __half* __restrict__ x, const float* __restrict__ sx,
                      const uint8_t* __restrict__ codes, const uint8_t* __restrict__ scales,
                      const float* __restrict__ sw, int64_t n, int64_t k, __nv_bfloat16* y) {
  __shared__ alignas(128) uint8_t ring[kWarps][kSlots][kSlotBytes];
  __shared__ alignas(8) uint64_t bar[kWarps][kSlots];
  __shared__ float red[kWarps][4][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int64_t tile = blockIdx.x, nwin = k / kWin;
  if (lane == 0) {
    for (int j = 0; j < kSlots; ++j) {
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(&bar[warp][j]))
                   : "memory");
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    for (int j = 0; j < kSlots; ++j) {
      const int64_t w = warp + j * kWarps;
      if (w < nwin) bulk_window(ring[warp][j], &bar[warp][j], codes, scales, tile, nwin, w);
    }
  }
  __syncwarp();
  float acc[4] = {};
  for (int64_t i = 0;; ++i) {
    const int64_t w = warp + i * kWarps;
    if (w >= nwin) break;
    const int slot = static_cast<int>(i % kSlots);
    wait_parity(&bar[warp][slot], static_cast<uint32_t>((i / kSlots) & 1));
    const uint8_t* sl_bytes = ring[warp][slot];
    WeightSlice<1> sl;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      sl.q[0][h] = *reinterpret_cast<const uint4*>(sl_bytes + h * 512 + lane * 16);
      sl.s[0][h][0] = sl.s[0][h][1] = sl_bytes[1024 + h * 32 + lane];
    }
    __syncwarp();  // every lane has its pieces: the slot may be refilled
    if (lane == 0 && w + kSlots * kWarps < nwin) {
      bulk_window(ring[warp][slot], &bar[warp][slot], codes, scales, tile, nwin,
                  w + kSlots * kWarps);
    }
    window_math(acc, sl, x, k, w, g, t);
  }
  tile_out(acc, red, codes, scales, sw, sx, n, y);
}

// The tiled layout above (the library's weight layout since session 8: pack_weight writes it)
// -> row-major codes / scales (n, k), for the row-major variant.
__global__ void row_layout_kernel(const uint8_t* __restrict__ tcodes,
                                  const uint8_t* __restrict__ tscales, int64_t n, int64_t k,
                                  uint8_t* codes, uint8_t* scales) {
  const int64_t nwin = k / kWin;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;  // a piece
  if (i >= n / 16 * nwin * 64) return;
  const int lane = static_cast<int>(i % 32), h = static_cast<int>((i / 32) % 2);
  const int64_t w = (i / 64) % nwin, tile = i / 64 / nwin;
  const int g = lane >> 2, t = lane & 3;
  const int64_t e = (tile * 16 + 8 * h + g) * k + w * kWin + 32 * t;
  *reinterpret_cast<uint4*>(codes + e / 2) = reinterpret_cast<const uint4*>(tcodes)[i];
  scales[e / 32] = tscales[i];
}

std::vector<uint16_t> download16(const void* p, size_t n) {
  std::vector<uint16_t> h(n);
  check(cudaMemcpy(h.data(), p, n * 2, cudaMemcpyDeviceToHost), "d2h");
  return h;
}
float bf16f(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

int main() {
  namespace sb = sharq::bench;
  namespace sc = sharq::cuda;
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "props");
  cudaStream_t s;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
  std::printf(
      "%s, M = 1, sharq-nvfp4-24, us (%% of the copy rate)\n| K | N | library gemm_decode_mma | "
      "library forced (row tiles/warps us) | probe row-major | probe "
      "tiled | probe tiled, bulk ring | all probes equal | vs library (rel) |\n"
      "|---|---|---|---|---|---|---|---|---|\n",
      prop.name);
  const std::pair<int64_t, int64_t> shapes[] = {
      {4096, 6144}, {4096, 4096}, {4096, 28672}, {14336, 4096}};
  for (const auto& [k, n] : shapes) {
    const size_t cb = size_t(n) * k / 2, sbytes = size_t(n) * k / 32;
    const int rot = sb::rotation_copies(prop, cb + sbytes);
    // Weights: packed (tiled) into each rotation slot, plus a row-major twin.
    float* wf = static_cast<float*>(sb::dmalloc(size_t(n) * k * 4));
    sb::fill_random(wf, size_t(n) * k, 5, 8.0f);
    uint32_t* scratch = static_cast<uint32_t*>(sb::dmalloc(64));
    std::vector<sc::Nvfp4View> wr(rot), wt(rot);
    for (int r = 0; r < rot; ++r) {
      wr[r] = {static_cast<uint8_t*>(sb::dmalloc(cb)), static_cast<uint8_t*>(sb::dmalloc(sbytes)),
               static_cast<float*>(sb::dmalloc(4))};
      wt[r] = {static_cast<uint8_t*>(sb::dmalloc(cb)), static_cast<uint8_t*>(sb::dmalloc(sbytes)),
               wr[r].tensor_scale};
      sc::pack_weight(wf, n, k, 32, wt[r], scratch, nullptr);
      const int64_t pieces = n / 16 * (k / kWin) * 64;
      row_layout_kernel<<<static_cast<unsigned>((pieces + 255) / 256), 256>>>(
          wt[r].codes, wt[r].scales, n, k, wr[r].codes, wr[r].scales);
    }
    // The activation: prepare()'s planes of a random row.
    const sb::PreparedRow act(k, scratch);
    uint16_t* xh = act.planes;
    uint16_t* y_lib = static_cast<uint16_t*>(sb::dmalloc(size_t(n) * 2));
    uint16_t* y_row = static_cast<uint16_t*>(sb::dmalloc(size_t(n) * 2));
    uint16_t* y_til = static_cast<uint16_t*>(sb::dmalloc(size_t(n) * 2));
    uint16_t* y_blk = static_cast<uint16_t*>(sb::dmalloc(size_t(n) * 2));
    check(cudaDeviceSynchronize(), "setup");

    const unsigned grid = static_cast<unsigned>(n / 16);
    const auto* xhh = reinterpret_cast<const __half*>(xh);
    auto row = [&](int i) {
      probe_kernel<false><<<grid, kWarps * 32, 0, s>>>(
          xhh, act.scale(), wr[i % rot].codes, wr[i % rot].scales, wr[i % rot].tensor_scale, n, k,
          reinterpret_cast<__nv_bfloat16*>(y_row));
    };
    auto til = [&](int i) {
      probe_kernel<true><<<grid, kWarps * 32, 0, s>>>(
          xhh, act.scale(), wt[i % rot].codes, wt[i % rot].scales, wt[i % rot].tensor_scale, n, k,
          reinterpret_cast<__nv_bfloat16*>(y_til));
    };
    auto blk = [&](int i) {
      probe_bulk_kernel<<<grid, kWarps * 32, 0, s>>>(xhh, act.scale(), wt[i % rot].codes,
                                                     wt[i % rot].scales, wt[i % rot].tensor_scale,
                                                     n, k, reinterpret_cast<__nv_bfloat16*>(y_blk));
    };
    auto lib = [&](int i) {
      sc::gemm_decode_mma(xh, 2, act.scale(), 1, wt[i % rot], 32, n, k, y_lib, s);
    };
    row(0);
    til(0);
    blk(0);
    lib(0);
    check(cudaStreamSynchronize(s), "check run");
    const auto a = download16(y_row, n), b = download16(y_til, n), c = download16(y_lib, n),
               d = download16(y_blk, n);
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double d = bf16f(a[i]) - bf16f(c[i]);
      num += d * d;
      den += double(bf16f(c[i])) * bf16f(c[i]);
    }
    const bool equal = a == b && a == d;
    const double t_lib = sb::median_graph_us(s, lib);
    // The library forced to each (row tiles a warp, warps a block).
    char forced[512] = "";
    for (int pdl : {1, 0}) {
      sc::testing::decode_gemm_pdl(pdl == 1);
      for (auto [rt, wp] : {std::pair{1, 8}, {2, 8}}) {
        sc::testing::decode_gemm_row_tiles(rt);
        sc::testing::decode_gemm_warps(wp);
        const double t = sb::median_graph_us(s, lib);
        std::snprintf(forced + std::strlen(forced), sizeof forced - std::strlen(forced),
                      "%s%d/%d%s %.1f", forced[0] ? ", " : "", rt, wp, pdl ? "" : " no-PDL", t);
      }
    }
    sc::testing::decode_gemm_pdl(true);
    sc::testing::decode_gemm_row_tiles(0);
    sc::testing::decode_gemm_warps(0);
    const double t_row = sb::median_graph_us(s, row);
    const double t_til = sb::median_graph_us(s, til);
    const double t_blk = sb::median_graph_us(s, blk);
    uint8_t* dst = static_cast<uint8_t*>(sb::dmalloc(cb));
    const double t_cp = sb::median_graph_us(s, [&](int i) {
      check(cudaMemcpyAsync(dst, wr[i % rot].codes, cb, cudaMemcpyDeviceToDevice, s), "copy");
    });
    const double copy_bps = 2.0 * double(cb) / (t_cp * 1e-6);
    const auto pct = [&](double us) {
      return 100.0 * double(cb + sbytes) / (us * 1e-6) / copy_bps;
    };
    std::printf(
        "| %lld | %lld | %.1f (%.0f%%) | %s | %.1f (%.0f%%) | %.1f (%.0f%%) | %.1f (%.0f%%) | %s "
        "| %.1e |\n",
        (long long)k, (long long)n, t_lib, pct(t_lib), forced, t_row, pct(t_row), t_til, pct(t_til),
        t_blk, pct(t_blk), equal ? "yes" : "NO", std::sqrt(num / den));
    std::fflush(stdout);
    for (int r = 0; r < rot; ++r) {
      for (void* p : {(void*)wr[r].codes, (void*)wr[r].scales, (void*)wr[r].tensor_scale,
                      (void*)wt[r].codes, (void*)wt[r].scales})
        cudaFree(p);
    }
    for (void* p : {(void*)wf, (void*)scratch, (void*)y_lib, (void*)y_row, (void*)y_til,
                    (void*)y_blk, (void*)dst})
      cudaFree(p);
  }
  return 0;
}
