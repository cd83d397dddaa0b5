// Prefill ladder, rung 1 of the 2:4 backbone product (dev only, built by scripts/pack_device.sh):
// a whole GEMM on `wgmma.mma_async.sp` with the layouts rung 0 (sparse_wgmma_probe.cu) verified.
//   C (M, N) float = A_sp (M, K; 2:4 along K, FP16) . W (N, K; FP16, K-major)^T
// A arrives compressed (the two kept values of each 4-chunk, lower position first) with its
// metadata already in the register layout (one b32 per (16-row block, k32 step, g, half)), as a
// prepare could write them. CTA tile 128 x 128, two warpgroups (64 rows each), K steps of 64;
// W, A and metadata of a step arrive by cp.async, kStages - 2 steps ahead (W 128-byte swizzled,
// A rows padded to 80 bytes so the lanes' 4-byte reads hit distinct banks); per step each
// warpgroup issues two m64n128k32 sparse MMAs with A from registers and waits for them.
// Checked against a float64 reference (small shape) and against cuBLAS on the dense expansion of
// A (large shapes); timed against that cuBLAS FP16 GEMM (FP32 out, the engine's prefill product)
// on Llama-3.1-8B shapes at M = 2048.
// Build: nvcc -std=c++20 -O3 -gencode=arch=compute_90a,code=sm_90a dev/cuda/sparse_gemm_probe.cu
//        -lcublas -o sparse_gemm_probe
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "../../src/cuda/wgmma_sp.cuh"
#include "gemm_probe_host.cuh"

namespace {

using sharq::cuda::sm90::smem_desc;
using sharq::cuda::sm90::wgmma_sp_m64n128k32;
using sharq::dev::check;
using sharq::dev::compare_with_cublas;
using sharq::dev::upload;

constexpr int kBM = 128, kBN = 128, kBK = 64, kStages = 4, kThreads = 256;
constexpr int kWBytes = kBN * 128;                // W tile: 128 rows x 64 halves
constexpr int kARow = 80;                         // padded A row: 32 halves (64 bytes) + 16
constexpr int kABytes = kBM * kARow;              // A tile
constexpr int kEBytes = (kBM / 16) * 2 * 16 * 4;  // metadata: 8 row blocks x 2 k32 x 16 words
constexpr int kStageBytes = kWBytes + kABytes + kEBytes;  // 27 KB (a multiple of 1024)
constexpr int kSmemBytes = kStages * kStageBytes + 1024;  // + alignment slack: two CTAs an SM
static_assert(kStageBytes % 1024 == 0, "stages 1024-aligned for the swizzle");

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}
// A: (m, k / 2) halves; E: (m / 16, k / 32, 8, 2) words; W: (n, k) halves; C: (m, n) floats.
__global__ void __launch_bounds__(kThreads, 2)
    sparse_gemm_kernel(const __half* __restrict__ A, const uint32_t* __restrict__ E,
                       const __half* __restrict__ W, float* __restrict__ C, int m, int n, int k) {
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  // The swizzled W tiles need 1024-byte alignment: round the dynamic window's start up.
  uint8_t* smem = smem_raw + ((1024 - (__cvta_generic_to_shared(smem_raw) & 1023)) & 1023);
  const int tid = threadIdx.x, wg = tid / 128, warp = (tid / 32) % 4, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;
  const int n0 = blockIdx.x * kBN, m0 = blockIdx.y * kBM, nk = k / kBK;
  const uint32_t sbase = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  auto load = [&](int ks) {
    if (ks < nk) {
      const uint32_t st = sbase + (ks % kStages) * kStageBytes;
      for (int x = tid; x < kBN * 8; x += kThreads) {  // W: 16-byte chunk x % 8 of row x / 8
        const int r = x / 8, ch = x % 8;
        cp_async16(st + r * 128 + ((ch ^ (r & 7)) * 16),
                   W + static_cast<size_t>(n0 + r) * k + ks * kBK + ch * 8);
      }
      for (int x = tid; x < kBM * 4; x += kThreads) {  // A: 4 chunks of 16 bytes a row
        const int r = x / 4, ch = x % 4;
        cp_async16(st + kWBytes + r * kARow + ch * 16,
                   A + static_cast<size_t>(m0 + r) * (k / 2) + ks * (kBK / 2) + ch * 8);
      }
      if (tid < (kBM / 16) * 8) {  // metadata: 8 row blocks x 128 bytes (two k32 steps)
        const int rb = tid / 8, ch = tid % 8;
        cp_async16(st + kWBytes + kABytes + rb * 128 + ch * 16,
                   E + (static_cast<size_t>(m0 / 16 + rb) * (k / 32) + 2 * ks) * 16 + ch * 4);
      }
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
  };
  for (int s = 0; s < kStages - 2; ++s) load(s);
  float d[64] = {};
  const int rl = wg * 64 + warp * 16 + g;  // this lane's first row in the tile (and rl + 8)
  for (int ks = 0; ks < nk; ++ks) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kStages - 3) : "memory");
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();  // step ks is in shared memory; every warpgroup is done with step ks - 1
    load(ks + kStages - 2);  // into the stage step ks - 2 used
    const uint8_t* st = smem + (ks % kStages) * kStageBytes;
    const uint32_t* as = reinterpret_cast<const uint32_t*>(st + kWBytes);
    const uint32_t* es = reinterpret_cast<const uint32_t*>(st + kWBytes + kABytes);
    uint32_t a[2][4], meta[2];
#pragma unroll
    for (int s = 0; s < 2; ++s) {  // k32 step s: chunks 8s..8s+7 of the tile's 16
      a[s][0] = as[rl * (kARow / 4) + 8 * s + t];
      a[s][1] = as[(rl + 8) * (kARow / 4) + 8 * s + t];
      a[s][2] = as[rl * (kARow / 4) + 8 * s + 4 + t];
      a[s][3] = as[(rl + 8) * (kARow / 4) + 8 * s + 4 + t];
      meta[s] = t < 2 ? es[(rl / 16) * 32 + s * 16 + g * 2 + t] : 0u;
    }
    const uint32_t wb = sbase + (ks % kStages) * kStageBytes;
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
    wgmma_sp_m64n128k32(d, a[0], smem_desc(wb), meta[0]);
    wgmma_sp_m64n128k32(d, a[1], smem_desc(wb + 64), meta[1]);
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
  }
  const int row = m0 + rl;
#pragma unroll
  for (int j = 0; j < kBN / 8; ++j) {
    const int col = n0 + 8 * j + 2 * t;
    *reinterpret_cast<float2*>(C + static_cast<size_t>(row) * n + col) =
        make_float2(d[4 * j], d[4 * j + 1]);
    *reinterpret_cast<float2*>(C + static_cast<size_t>(row + 8) * n + col) =
        make_float2(d[4 * j + 2], d[4 * j + 3]);
  }
}

struct Problem {
  int m, n, k;
  std::vector<__half> a_comp, a_dense, w;
  std::vector<uint32_t> e;
};

// Random 2:4 A (every pattern), its compressed form and register-layout metadata; random W.
Problem make_problem(int m, int n, int k, uint32_t seed) {
  const int pairs[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  Problem p{m,
            n,
            k,
            std::vector<__half>(static_cast<size_t>(m) * k / 2),
            std::vector<__half>(static_cast<size_t>(m) * k, __float2half(0.0f)),
            std::vector<__half>(static_cast<size_t>(n) * k),
            std::vector<uint32_t>(static_cast<size_t>(m / 16) * (k / 32) * 16, 0u)};
  for (int r = 0; r < m; ++r) {
    for (int c = 0; c < k / 4; ++c) {
      const int* pr = pairs[rng() % 6];
      for (int j = 0; j < 2; ++j) {
        const __half v = __float2half(u(rng));
        p.a_comp[static_cast<size_t>(r) * (k / 2) + 2 * c + j] = v;
        p.a_dense[static_cast<size_t>(r) * k + 4 * c + pr[j]] = v;
      }
      // Word (row block, k32 step, g, half): row g of the block in bits 15:0, g + 8 in 31:16.
      const int rb = r / 16, rr = r % 16, g = rr % 8, s = c / 8, half = (c % 8) / 4;
      const uint32_t nib = static_cast<uint32_t>(pr[0] | (pr[1] << 2));
      p.e[(static_cast<size_t>(rb) * (k / 32) + s) * 16 + g * 2 + half] |=
          nib << (4 * (c % 4) + (rr >= 8 ? 16 : 0));
    }
  }
  for (auto& v : p.w) v = __float2half(u(rng));
  return p;
}

void run_sparse(const __half* a, const uint32_t* e, const __half* w, float* c, int m, int n,
                int k) {
  sparse_gemm_kernel<<<dim3(n / kBN, m / kBM), kThreads, kSmemBytes>>>(a, e, w, c, m, n, k);
}

}  // namespace

int main() {
  cublasHandle_t h = sharq::dev::start_probe("sparse_gemm_probe", sparse_gemm_kernel, kSmemBytes);
  int failures = 0;
  // Small: float64 reference, every element.
  {
    const int m = 256, n = 256, k = 512;
    const Problem p = make_problem(m, n, k, 11);
    __half *da = upload(p.a_comp), *dw = upload(p.w);
    uint32_t* de = upload(p.e);
    float* dc;
    check(cudaMalloc(&dc, sizeof(float) * m * n), "malloc");
    check(cudaMemset(dc, 0xFF, sizeof(float) * m * n), "poison");
    run_sparse(da, de, dw, dc, m, n, k);
    check(cudaGetLastError(), "launch");
    check(cudaDeviceSynchronize(), "run");
    std::vector<float> c(static_cast<size_t>(m) * n);
    check(cudaMemcpy(c.data(), dc, c.size() * 4, cudaMemcpyDeviceToHost), "download");
    int bad = 0;
    double worst = 0.0;
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < n; ++j) {
        double ref = 0.0, mag = 0.0;
        for (int x = 0; x < k; ++x) {
          const double v =
              static_cast<double>(__half2float(p.a_dense[static_cast<size_t>(i) * k + x])) *
              __half2float(p.w[static_cast<size_t>(j) * k + x]);
          ref += v;
          mag += std::fabs(v);
        }
        const double err = std::fabs(c[static_cast<size_t>(i) * n + j] - ref) / (mag + 1e-30);
        if (!(err <= 1e-5)) ++bad;
        if (std::isfinite(err) && err > worst) worst = err;
      }
    }
    std::printf("%dx%dx%d vs float64: max error / sum|terms| %.3g, %d of %d wrong -> %s\n", m, n, k,
                worst, bad, m * n, bad == 0 ? "PASS" : "FAIL");
    failures += bad != 0;
    cudaFree(da), cudaFree(dw), cudaFree(de), cudaFree(dc);
  }
  // Llama-3.1-8B shapes at M = 2048: against cuBLAS FP16 on the dense expansion, and timed.
  const int shapes[][2] = {{4096, 6144}, {4096, 4096}, {4096, 28672}, {14336, 4096}};
  for (const auto& s : shapes) {
    const int m = 2048, k = s[0], n = s[1];
    const Problem p = make_problem(m, n, k, 5 + k + n);
    __half *da = upload(p.a_comp), *dw = upload(p.w);
    uint32_t* de = upload(p.e);
    failures += !compare_with_cublas(
        h, p.a_dense, p.w, m, n, k, [&](float* c) { run_sparse(da, de, dw, c, m, n, k); }, true);
    cudaFree(da), cudaFree(dw), cudaFree(de);
  }
  cublasDestroy(h);
  std::printf("%s\n", failures == 0 ? "ALL PASS" : "FAILURES");
  return failures == 0 ? 0 : 1;
}
