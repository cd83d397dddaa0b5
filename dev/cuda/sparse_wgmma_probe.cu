// Prefill ladder, rung 0 of the 2:4 backbone product (dev only, built by scripts/pack_device.sh):
// does `wgmma.mma_async.sp` (m64n64k32, f16 in, f32 accumulation, A = the 2:4-sparse activation
// in registers, B = dense K-major weight rows in 128-byte-swizzled shared memory) compute
// C = A . B^T with the register and metadata layouts derived in ../shared/HOPPER_FACTS.md
// section 1? One warpgroup, K = 64 (two k32 steps), every 2-of-4 pattern, against a float64 host
// reference. Each layout candidate runs separately, so a wrong derivation shows which part is
// wrong instead of only that something is:
//   AORD 0: a0..a3 = (row g, chunk t), (g + 8, t), (g, 4 + t), (g + 8, 4 + t)  [derived]
//   AORD 1: a0..a3 = (g, t), (g, 4 + t), (g + 8, t), (g + 8, 4 + t)
//   META 0: lane 2 sel holds chunks 0..3, lane 2 sel + 1 chunks 4..7; row g in bits 15:0, row
//           g + 8 in bits 31:16, chunk c at nibble c  [derived]
//   META 1: lane 2 sel holds row g, lane 2 sel + 1 row g + 8, chunk c at nibble c (8 nibbles)
// for sp-sel 0 and 1. Prints max |error| / scale per candidate and PASS or FAIL; then the rate of
// the sparse instruction against the dense one (m64n128, MMA-bound), dense-equivalent TFLOP/s.
// Build: nvcc -std=c++20 -O3 -gencode=arch=compute_90a,code=sm_90a dev/cuda/sparse_wgmma_probe.cu
//        -o sparse_wgmma_probe
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
using sharq::cuda::sm90::wgmma_m64n128k16_rs;
using sharq::cuda::sm90::wgmma_sp_m64n128k32;
using sharq::dev::check;

constexpr int kM = 64, kN = 64, kK = 64, kChunks = kK / 4;

template <int SEL>
__device__ __forceinline__ void wgmma_sp_m64n64k32(float (&d)[32], const uint32_t (&a)[4],
                                                   uint64_t b, uint32_t meta, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %38, 0;\n"
      "wgmma.mma_async.sp.sync.aligned.m64n64k32.f32.f16.f16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
      "}, {%32, %33, %34, %35}, %36, %37, %39, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(meta), "r"(scale_d), "n"(SEL)
      : "memory");
}

// ac: (kM, kK / 2) kept values, chunk c of a row at [2c, 2c + 1]; idx: (kM, kChunks) nibbles
// (first index | second << 2); b: (kN, kK) dense; c: (kM, kN).
template <int AORD, int META, int SEL>
__global__ void __launch_bounds__(128)
    probe_kernel(const __half* __restrict__ ac, const uint8_t* __restrict__ idx,
                 const __half* __restrict__ b, float* __restrict__ c) {
  __shared__ __align__(1024) uint8_t bs[kN * 128];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  for (int x = tid; x < kN * 8; x += 128) {  // 16-byte chunk x % 8 of row x / 8, swizzled
    const int r = x / 8, ch = x % 8;
    *reinterpret_cast<uint4*>(bs + r * 128 + ((ch ^ (r & 7)) * 16)) =
        *reinterpret_cast<const uint4*>(b + r * kK + ch * 8);
  }
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  __syncthreads();
  const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(bs));
  const int r0 = warp * 16 + g, r1 = r0 + 8;
  const uint32_t* acw = reinterpret_cast<const uint32_t*>(ac);  // one b32 = a chunk's 2 values
  float d[32] = {};
  for (int s = 0; s < 2; ++s) {
    const int c0 = 8 * s;  // this step's first chunk
    uint32_t a[4];
    if (AORD == 0) {
      a[0] = acw[r0 * kChunks + c0 + t], a[1] = acw[r1 * kChunks + c0 + t];
      a[2] = acw[r0 * kChunks + c0 + 4 + t], a[3] = acw[r1 * kChunks + c0 + 4 + t];
    } else {
      a[0] = acw[r0 * kChunks + c0 + t], a[1] = acw[r0 * kChunks + c0 + 4 + t];
      a[2] = acw[r1 * kChunks + c0 + t], a[3] = acw[r1 * kChunks + c0 + 4 + t];
    }
    uint32_t meta = 0;
    if (t == 2 * SEL || t == 2 * SEL + 1) {
      const bool second = t == 2 * SEL + 1;
      if (META == 0) {
        const int cb = c0 + (second ? 4 : 0);
        for (int q = 0; q < 4; ++q) {
          meta |= static_cast<uint32_t>(idx[r0 * kChunks + cb + q]) << (4 * q);
          meta |= static_cast<uint32_t>(idx[r1 * kChunks + cb + q]) << (16 + 4 * q);
        }
      } else {
        const int r = second ? r1 : r0;
        for (int q = 0; q < 8; ++q)
          meta |= static_cast<uint32_t>(idx[r * kChunks + c0 + q]) << (4 * q);
      }
    }
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
    wgmma_sp_m64n64k32<SEL>(d, a, smem_desc(base + 64 * s), meta, s);
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
  }
  for (int j = 0; j < kN / 8; ++j) {
    const int col = 8 * j + 2 * t;
    c[r0 * kN + col] = d[4 * j], c[r0 * kN + col + 1] = d[4 * j + 1];
    c[r1 * kN + col] = d[4 * j + 2], c[r1 * kN + col + 1] = d[4 * j + 3];
  }
}

template <int AORD, int META, int SEL>
bool run(const std::vector<__half>& ac, const std::vector<uint8_t>& idx,
         const std::vector<__half>& b, const std::vector<double>& ref,
         const std::vector<double>& mag) {
  __half *dac, *db;
  uint8_t* didx;
  float* dc;
  check(cudaMalloc(&dac, ac.size() * 2), "malloc");
  check(cudaMalloc(&db, b.size() * 2), "malloc");
  check(cudaMalloc(&didx, idx.size()), "malloc");
  check(cudaMalloc(&dc, kM * kN * 4), "malloc");
  check(cudaMemcpy(dac, ac.data(), ac.size() * 2, cudaMemcpyHostToDevice), "copy");
  check(cudaMemcpy(db, b.data(), b.size() * 2, cudaMemcpyHostToDevice), "copy");
  check(cudaMemcpy(didx, idx.data(), idx.size(), cudaMemcpyHostToDevice), "copy");
  check(cudaMemset(dc, 0xFF, kM * kN * 4), "poison");  // NaN: an unwritten element fails
  probe_kernel<AORD, META, SEL><<<1, 128>>>(dac, didx, db, dc);
  check(cudaGetLastError(), "launch");
  check(cudaDeviceSynchronize(), "run");
  std::vector<float> c(kM * kN);
  check(cudaMemcpy(c.data(), dc, c.size() * 4, cudaMemcpyDeviceToHost), "copy back");
  double worst = 0.0;
  int bad = 0, first = -1;
  for (int i = 0; i < kM * kN; ++i) {
    const double e = std::fabs(c[i] - ref[i]) / (mag[i] + 1e-30);
    if (!(e <= 1e-5)) {
      ++bad;
      if (first < 0) first = i;
    }
    worst = std::isfinite(e) && e > worst ? e : (std::isfinite(e) ? worst : INFINITY);
  }
  std::printf("AORD %d META %d sel %d: max |err| / sum|terms| %.3g, bad %d of %d", AORD, META, SEL,
              worst, bad, kM * kN);
  if (first >= 0)
    std::printf(" (first at row %d col %d: %g vs %g)", first / kN, first % kN, c[first],
                ref[first]);
  std::printf(" -> %s\n", bad == 0 ? "PASS" : "FAIL");
  cudaFree(dac), cudaFree(db), cudaFree(didx), cudaFree(dc);
  return bad == 0;
}

// ---- Rate: the same instruction at N = 128 against the dense one, MMA-bound (one accumulator
// per warpgroup, two warpgroups an SM, B resident in shared memory, A in registers). ----
// Each iteration covers K = 64 of the logical (dense) product: two sparse k32 or four dense k16.
template <bool SPARSE>
__global__ void __launch_bounds__(128)
    rate_kernel(const __half* __restrict__ b, float* __restrict__ out, int iters) {
  __shared__ __align__(1024) uint8_t bs[128 * 128];
  const int tid = threadIdx.x;
  for (int x = tid; x < 128 * 8; x += 128) {
    const int r = x / 8, ch = x % 8;
    *reinterpret_cast<uint4*>(bs + r * 128 + ((ch ^ (r & 7)) * 16)) =
        *reinterpret_cast<const uint4*>(b + r * 64 + ch * 8);
  }
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  __syncthreads();
  const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(bs));
  const uint32_t a[4] = {0x3c003c00u ^ tid, 0x3800b800u, 0x3c00bc00u ^ (tid << 3), 0x34003400u};
  const uint32_t meta = 0x44444444u;  // every chunk keeps positions 0 and 1
  float d[64] = {};
  for (int i = 0; i < iters; ++i) {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
    if (SPARSE) {
      wgmma_sp_m64n128k32(d, a, smem_desc(base), meta);
      wgmma_sp_m64n128k32(d, a, smem_desc(base + 64), meta);
    } else {
#pragma unroll
      for (int k = 0; k < 4; ++k) wgmma_m64n128k16_rs(d, a, smem_desc(base + 32 * k));
    }
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
  }
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < 64; ++i) sum += d[i];
  out[blockIdx.x * 128 + tid] = sum;
}

template <bool SPARSE>
double rate_tflops(const __half* db, float* dout, int ctas, int iters) {
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "event");
  check(cudaEventCreate(&e1), "event");
  rate_kernel<SPARSE><<<ctas, 128>>>(db, dout, iters);  // warm-up
  check(cudaEventRecord(e0), "record");
  for (int r = 0; r < 5; ++r) rate_kernel<SPARSE><<<ctas, 128>>>(db, dout, iters);
  check(cudaEventRecord(e1), "record");
  check(cudaEventSynchronize(e1), "sync");
  float ms = 0.0f;
  check(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  const double flops = 5.0 * ctas * iters * 2.0 * 64 * 128 * 64;  // logical (dense) work
  return flops / (ms * 1e-3) * 1e-12;
}
}  // namespace

int main() {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "device");
  std::printf("sparse_wgmma_probe on %s\n", prop.name);
  // Every 2-of-4 pattern (first < second), cycled over the chunks; values away from zero.
  const int pairs[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(0.25f, 2.0f);
  std::vector<__half> ac(kM * kK / 2), b(kN * kK);
  std::vector<uint8_t> idx(kM * kChunks);
  std::vector<double> a(kM * kK, 0.0), ref(kM * kN, 0.0), mag(kM * kN, 0.0);
  for (int r = 0; r < kM; ++r) {
    for (int ch = 0; ch < kChunks; ++ch) {
      const int* p = pairs[(r * 5 + ch * 7 + static_cast<int>(rng() % 6)) % 6];
      idx[r * kChunks + ch] = static_cast<uint8_t>(p[0] | (p[1] << 2));
      for (int j = 0; j < 2; ++j) {
        const __half v = __float2half(rng() % 2 ? u(rng) : -u(rng));
        ac[r * kK / 2 + 2 * ch + j] = v;
        a[r * kK + 4 * ch + p[j]] = __half2float(v);
      }
    }
  }
  for (auto& v : b) v = __float2half(rng() % 2 ? u(rng) : -u(rng));
  for (int m = 0; m < kM; ++m) {
    for (int n = 0; n < kN; ++n) {
      for (int k = 0; k < kK; ++k) {
        const double p = a[m * kK + k] * __half2float(b[n * kK + k]);
        ref[m * kN + n] += p;
        mag[m * kN + n] += std::fabs(p);
      }
    }
  }
  int pass = 0;
  pass += run<0, 0, 0>(ac, idx, b, ref, mag);
  pass += run<0, 0, 1>(ac, idx, b, ref, mag);
  pass += run<1, 0, 0>(ac, idx, b, ref, mag);
  pass += run<0, 1, 0>(ac, idx, b, ref, mag);
  pass += run<1, 1, 0>(ac, idx, b, ref, mag);
  std::printf("%d of 5 candidates pass (the derived layout is AORD 0 META 0, both sel)\n", pass);
  // The rate, in dense-equivalent TFLOP/s (a 2:4 product counts the work of the dense one).
  std::vector<__half> b128(128 * 64);
  for (auto& v : b128) v = __float2half(rng() % 2 ? 0.5f : -0.5f);
  __half* db;
  float* dout;
  const int ctas = 2 * prop.multiProcessorCount, iters = 4096;
  check(cudaMalloc(&db, b128.size() * 2), "malloc");
  check(cudaMalloc(&dout, static_cast<size_t>(ctas) * 128 * 4), "malloc");
  check(cudaMemcpy(db, b128.data(), b128.size() * 2, cudaMemcpyHostToDevice), "copy");
  const double dense = rate_tflops<false>(db, dout, ctas, iters);
  const double sparse = rate_tflops<true>(db, dout, ctas, iters);
  std::printf(
      "rate m64n128, A in registers, %d CTAs: dense k16 %.0f TFLOP/s, 2:4 sparse k32 %.0f "
      "TFLOP/s dense-equivalent (%.2fx)\n",
      ctas, dense, sparse, sparse / dense);
  cudaFree(db), cudaFree(dout);
  return 0;
}
