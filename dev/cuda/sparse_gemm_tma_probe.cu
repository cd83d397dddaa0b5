// Prefill ladder, rung 2 of the 2:4 backbone product (dev only, built by scripts/pack_device.sh;
// written in session 11, NOT RUN YET): rung 1's GEMM (sparse_gemm_probe.cu) with the pipeline a
// fast Hopper GEMM has.
//   C (M, N) float = A_sp (M, K; 2:4 along K, FP16) . W (N, K; FP16)^T
// - Every operand of a K step is one contiguous block in global memory, laid out as its shared-
//   memory image (W: 256 rows x 64 halves, 128-byte swizzled; A: 128 compressed rows padded to 80
//   bytes; metadata: 8 row blocks x 2 k32 steps x 16 words), so one producer thread moves a
//   stage with three bulk copies (`cp.async.bulk`, completion counted on the stage's mbarrier).
//   A prepare (A, metadata) and the weight decode pass (W) would write these layouts directly.
// - Two consumer warpgroups (64 rows each) on a 128 x 256 tile, one m64n256k32 sparse MMA per
//   k32 step, one MMA group kept in flight (A in two register sets, alternating), a stage handed
//   back to the producer through its "empty" mbarrier when the MMAs reading it have completed.
// - CTAs take the M tiles of one 256-row weight panel one after another, so a panel streams from
//   HBM once and is reused from L2.
// Checked against cuBLAS on the dense expansion of A (each element within 1e-6 of its sum of
// |terms|) and against float64 on a small shape; timed against that cuBLAS FP16 GEMM (FP32 out).
// Build: nvcc -std=c++20 -O3 -gencode=arch=compute_90a,code=sm_90a
//        dev/cuda/sparse_gemm_tma_probe.cu -lcublas -o sparse_gemm_tma_probe
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "../../src/cuda/mbarrier.cuh"
#include "../../src/cuda/wgmma_sp.cuh"
#include "gemm_probe_host.cuh"

namespace {

using sharq::cuda::sm90::bulk_copy;
using sharq::cuda::sm90::mbar_arrive;
using sharq::cuda::sm90::mbar_expect_tx;
using sharq::cuda::sm90::mbar_init;
using sharq::cuda::sm90::mbar_wait;
using sharq::cuda::sm90::smem_desc;
using sharq::cuda::sm90::wgmma_sp_m64n256k32;
using sharq::dev::check;
using sharq::dev::compare_with_cublas;
using sharq::dev::upload;

constexpr int kBM = 128, kBN = 256, kBK = 64, kStages = 4, kConsumers = 2;
constexpr int kThreads = 128 * (kConsumers + 1);          // + one producer warpgroup
constexpr int kWBytes = kBN * 128;                        // 32 KB
constexpr int kARow = 80;                                 // 64 bytes of kept values + 16 of padding
constexpr int kABytes = kBM * kARow;                      // 10 KB
constexpr int kEBytes = (kBM / 16) * 2 * 16 * 4;          // 1 KB
constexpr int kStageBytes = kWBytes + kABytes + kEBytes;  // 43 KB
constexpr int kSmemBytes = kStages * kStageBytes + 1024;
static_assert(kStageBytes % 1024 == 0, "stages 1024-aligned for the swizzle");

// Wt: (n / 256, k / 64) W stage images; At, Et: (m / 128, k / 64) A and metadata stage images;
// C: (m, n).
__global__ void __launch_bounds__(kThreads, 1)
    sparse_gemm_tma_kernel(const uint8_t* __restrict__ Wt, const uint8_t* __restrict__ At,
                           const uint8_t* __restrict__ Et, float* __restrict__ C, int m, int n,
                           int k) {
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  uint8_t* smem = smem_raw + ((1024 - (__cvta_generic_to_shared(smem_raw) & 1023)) & 1023);
  __shared__ __align__(8) uint64_t full[kStages], empty[kStages];
  const uint32_t sbase = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int tid = threadIdx.x, wg = tid / 128;
  const int m_tiles = m / kBM, nk = k / kBK;
  const int mt = blockIdx.x % m_tiles, nt = blockIdx.x / m_tiles;  // a weight panel's M tiles
  auto full_bar = [&](int s) { return static_cast<uint32_t>(__cvta_generic_to_shared(&full[s])); };
  auto empty_bar = [&](int s) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(&empty[s]));
  };
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(full_bar(s), 1);
      mbar_init(empty_bar(s), kConsumers);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  // Registers to the consumers (232; the producer keeps 40): at the launch's 168 ptxas serialises
  // the wgmmas (warning C7512), which session 12's first run of this probe still did.
  if (wg == kConsumers) {  // producer: one thread moves every stage
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
    if (tid == kConsumers * 128) {
      for (int ks = 0; ks < nk; ++ks) {
        const int s = ks % kStages;
        if (ks >= kStages) mbar_wait(empty_bar(s), ((ks / kStages) & 1) ^ 1);
        const uint32_t st = sbase + s * kStageBytes;
        mbar_expect_tx(full_bar(s), kStageBytes);
        bulk_copy(st, Wt + (static_cast<size_t>(nt) * nk + ks) * kWBytes, kWBytes, full_bar(s));
        bulk_copy(st + kWBytes, At + (static_cast<size_t>(mt) * nk + ks) * kABytes, kABytes,
                  full_bar(s));
        bulk_copy(st + kWBytes + kABytes, Et + (static_cast<size_t>(mt) * nk + ks) * kEBytes,
                  kEBytes, full_bar(s));
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
  const int warp = (tid / 32) % 4, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int rl = wg * 64 + warp * 16 + g;  // this lane's first row in the tile (and rl + 8)
  float d[128] = {};
  // One K step: A and metadata from the stage into `a` (this step's register set), two MMAs;
  // then the step before it (the other register set) has completed: its stage goes back.
  auto step = [&](int ks, uint32_t(&a)[2][4], uint32_t(&meta)[2]) {
    const int s = ks % kStages;
    mbar_wait(full_bar(s), (ks / kStages) & 1);
    const uint8_t* st = smem + s * kStageBytes;
    const uint32_t* as = reinterpret_cast<const uint32_t*>(st + kWBytes);
    const uint32_t* es = reinterpret_cast<const uint32_t*>(st + kWBytes + kABytes);
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      a[j][0] = as[rl * (kARow / 4) + 8 * j + t];
      a[j][1] = as[(rl + 8) * (kARow / 4) + 8 * j + t];
      a[j][2] = as[rl * (kARow / 4) + 8 * j + 4 + t];
      a[j][3] = as[(rl + 8) * (kARow / 4) + 8 * j + 4 + t];
      meta[j] = t < 2 ? es[(rl / 16) * 32 + j * 16 + g * 2 + t] : 0u;
    }
    const uint32_t wb = sbase + s * kStageBytes;
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
    wgmma_sp_m64n256k32(d, a[0], smem_desc(wb), meta[0]);
    wgmma_sp_m64n256k32(d, a[1], smem_desc(wb + 64), meta[1]);
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
    if (ks > 0 && tid % 128 == 0) mbar_arrive(empty_bar((ks - 1) % kStages));
  };
  uint32_t a0[2][4], a1[2][4], m0[2], m1[2];
  int ks = 0;
  for (; ks + 1 < nk; ks += 2) {
    step(ks, a0, m0);
    step(ks + 1, a1, m1);
  }
  if (ks < nk) step(ks, a0, m0);
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");

  const int row = mt * kBM + rl;
#pragma unroll
  for (int j = 0; j < kBN / 8; ++j) {
    const int col = nt * kBN + 8 * j + 2 * t;
    *reinterpret_cast<float2*>(C + static_cast<size_t>(row) * n + col) =
        make_float2(d[4 * j], d[4 * j + 1]);
    *reinterpret_cast<float2*>(C + static_cast<size_t>(row + 8) * n + col) =
        make_float2(d[4 * j + 2], d[4 * j + 3]);
  }
}

// A random problem in the plain layouts (dense A for cuBLAS, W row-major) and in the stage
// images the kernel reads.
struct Problem {
  int m, n, k;
  std::vector<__half> a_dense, w;
  std::vector<uint8_t> wt, at, et;
};

Problem make_problem(int m, int n, int k, uint32_t seed) {
  const int pairs[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  const int nk = k / kBK;
  Problem p{m,
            n,
            k,
            std::vector<__half>(static_cast<size_t>(m) * k, __float2half(0.0f)),
            std::vector<__half>(static_cast<size_t>(n) * k),
            std::vector<uint8_t>(static_cast<size_t>(n / kBN) * nk * kWBytes),
            std::vector<uint8_t>(static_cast<size_t>(m / kBM) * nk * kABytes, 0),
            std::vector<uint8_t>(static_cast<size_t>(m / kBM) * nk * kEBytes, 0)};
  for (int r = 0; r < m; ++r) {
    const int mt = r / kBM, rr = r % kBM;
    for (int c = 0; c < k / 4; ++c) {
      const int* pr = pairs[rng() % 6];
      const int ks = c / 16, cl = c % 16;  // K step, chunk within it
      __half* arow = reinterpret_cast<__half*>(
          p.at.data() + (static_cast<size_t>(mt) * nk + ks) * kABytes + rr * kARow);
      for (int j = 0; j < 2; ++j) {
        const __half v = __float2half(u(rng));
        arow[2 * cl + j] = v;
        p.a_dense[static_cast<size_t>(r) * k + 4 * c + pr[j]] = v;
      }
      uint32_t* e =
          reinterpret_cast<uint32_t*>(p.et.data() + (static_cast<size_t>(mt) * nk + ks) * kEBytes);
      const int rb = rr / 16, r16 = rr % 16, g = r16 % 8, j32 = cl / 8, half = (cl % 8) / 4;
      e[rb * 32 + j32 * 16 + g * 2 + half] |= static_cast<uint32_t>(pr[0] | (pr[1] << 2))
                                              << (4 * (cl % 4) + (r16 >= 8 ? 16 : 0));
    }
  }
  for (auto& v : p.w) v = __float2half(u(rng));
  for (int r = 0; r < n; ++r) {  // W stage images: 16-byte chunk ch of row r at chunk ch ^ (r & 7)
    for (int ks = 0; ks < nk; ++ks) {
      uint8_t* img = p.wt.data() + (static_cast<size_t>(r / kBN) * nk + ks) * kWBytes;
      for (int ch = 0; ch < 8; ++ch) {
        std::memcpy(img + (r % kBN) * 128 + ((ch ^ (r % kBN & 7)) * 16),
                    p.w.data() + static_cast<size_t>(r) * k + ks * kBK + ch * 8, 16);
      }
    }
  }
  return p;
}

void run_sparse(const uint8_t* wt, const uint8_t* at, const uint8_t* et, float* c, int m, int n,
                int k) {
  sparse_gemm_tma_kernel<<<(m / kBM) * (n / kBN), kThreads, kSmemBytes>>>(wt, at, et, c, m, n, k);
}

// Our product vs cuBLAS on the dense expansion (compare_with_cublas), timed with `time`.
bool check_and_time(cublasHandle_t h, int m, int n, int k, uint32_t seed, bool time) {
  const Problem p = make_problem(m, n, k, seed);
  uint8_t *dwt = upload(p.wt), *dat = upload(p.at), *det = upload(p.et);
  const bool ok = compare_with_cublas(
      h, p.a_dense, p.w, m, n, k, [&](float* c) { run_sparse(dwt, dat, det, c, m, n, k); }, time);
  cudaFree(dwt), cudaFree(dat), cudaFree(det);
  return ok;
}

}  // namespace

int main() {
  cublasHandle_t h =
      sharq::dev::start_probe("sparse_gemm_tma_probe", sparse_gemm_tma_kernel, kSmemBytes);
  int failures = 0;
  failures += !check_and_time(h, 128, 256, 64, 3, false);   // one tile, one K step
  failures += !check_and_time(h, 256, 512, 448, 4, false);  // an odd number of K steps
  const int shapes[][2] = {{4096, 6144}, {4096, 4096}, {4096, 28672}, {14336, 4096}};
  for (const auto& s : shapes)
    failures += !check_and_time(h, 2048, s[1], s[0], 5 + s[0] + s[1], true);
  cublasDestroy(h);
  std::printf("%s\n", failures == 0 ? "ALL PASS" : "FAILURES");
  return failures == 0 ? 0 : 1;
}
