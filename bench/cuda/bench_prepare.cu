// Prepare schedules on the device machine: the existing prepare (memset + max + pass, 3 launches)
// against prepare_fused (two kernels, two kernels with programmatic dependent launch, one
// cooperative launch), and RMSNorm + prepare unfused (a plain RMSNorm kernel, then prepare)
// against prepare_rmsnorm (one launch). Mode sharq-nvfp4-24 writing the FP16 GEMM planes, the
// decode path's outputs. Each variant timed as back-to-back stream launches and as a CUDA graph
// of the same calls (how a decode step would run them). CUDA events, warm-up, median of 15
// loops. The activation is not rotated: in the engine it was just written by the previous
// kernel, so it sits in L2 whenever it fits. Usage: bench_prepare [csv_path]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench_common.cuh"
#include "sharq/cuda/kernels.h"

using sharq::bench::dmalloc;
using sharq::cuda::check;
namespace sc = sharq::cuda;

namespace {

// Median time (us) of one call: as a graph (bench::median_graph_us) or launched from the host.
double time_us(cudaStream_t s, const std::function<void()>& fn, bool graph, int inner = 20,
               int reps = 15) {
  if (graph)
    return sharq::bench::median_graph_us(
        s, [&](int) { fn(); }, inner, reps);
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  const double t = sharq::bench::median_calls_us(
      s, a, b, [&](int) { fn(); }, inner, reps);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return t;
}

// The unfused baseline's RMSNorm: one block per row, double sum of squares (not the certified
// CPU order: this one is only timed).
__global__ void rmsnorm_kernel(const float* x, const float* w, float eps, int64_t k, float* h) {
  __shared__ double part[32];
  __shared__ float inv_s;
  const float4* xr = reinterpret_cast<const float4*>(x + blockIdx.x * k);
  const float4* w4 = reinterpret_cast<const float4*>(w);
  float4* hr = reinterpret_cast<float4*>(h + blockIdx.x * k);
  double ss = 0;
  for (int64_t i = threadIdx.x; i < k / 4; i += blockDim.x) {
    const float4 f = xr[i];
    ss += double(f.x) * f.x + double(f.y) * f.y + double(f.z) * f.z + double(f.w) * f.w;
  }
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x / 32] = ss;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0;
    for (unsigned i = 0; i < blockDim.x / 32; ++i) t += part[i];
    inv_s = float(1.0 / sqrt(t / double(k) + eps));
  }
  __syncthreads();
  const float inv = inv_s;
  for (int64_t i = threadIdx.x; i < k / 4; i += blockDim.x) {
    const float4 f = xr[i], g = w4[i];
    hr[i] = make_float4(f.x * inv * g.x, f.y * inv * g.y, f.z * inv * g.z, f.w * inv * g.w);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* csv_path = argc > 1 ? argv[1] : nullptr;
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "props");
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20);
  cudaStream_t s;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
  FILE* csv = csv_path ? std::fopen(csv_path, "w") : nullptr;
  const char* names[] = {"prepare_3launch",
                         "fused_two_kernel",
                         "fused_two_kernel_pdl",
                         "fused_single",
                         "rmsnorm+prepare",
                         "rmsnorm+fused_single",
                         "prepare_rmsnorm_single",
                         "prepare_rmsnorm_two_kernel",
                         "prepare_rmsnorm_two_kernel_pdl"};
  constexpr int kVariants = 9;
  if (csv) {
    std::fprintf(csv, "device,rows,K,timing");
    for (const char* n : names) std::fprintf(csv, ",%s_us", n);
    std::fprintf(csv, "\n");
  }
  std::printf(
      "\n| rows | K | timing | prepare (3 launches) | two-kernel | two-kernel PDL | single launch "
      "| RMSNorm + prepare | RMSNorm + single | prepare_rmsnorm single | prepare_rmsnorm "
      "two-kernel "
      "| prepare_rmsnorm two-kernel PDL |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  const int64_t ks[] = {4096, 14336};
  const int64_t row_counts[] = {1, 4, 16, 32, 128, 2048};
  for (int64_t k : ks) {
    auto* w = static_cast<float*>(dmalloc(k * 4));
    {
      std::vector<float> hw(k);
      std::mt19937 rng(5);
      std::normal_distribution<float> nd(1.0f, 0.2f);
      for (auto& v : hw) v = nd(rng);
      check(cudaMemcpy(w, hw.data(), k * 4, cudaMemcpyHostToDevice), "h2d");
    }
    for (int64_t rows : row_counts) {
      const size_t n = size_t(rows) * k;
      auto* x = static_cast<float*>(dmalloc(n * 4));
      auto* h = static_cast<float*>(dmalloc(n * 4));
      {
        std::vector<float> hx(n);
        std::mt19937_64 rng(11);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        for (size_t i = 0; i < n; ++i) hx[i] = nd(rng) * ((i % k) % 997 == 0 ? 50.0f : 1.0f);
        check(cudaMemcpy(x, hx.data(), n * 4, cudaMemcpyHostToDevice), "h2d");
      }
      sc::Nvfp4View sp{static_cast<uint8_t*>(dmalloc(n / 2)),
                       static_cast<uint8_t*>(dmalloc(n / 32)), static_cast<float*>(dmalloc(4))};
      sc::Nvfp4View rs{static_cast<uint8_t*>(dmalloc(n / 2)),
                       static_cast<uint8_t*>(dmalloc(n / 16)), static_cast<float*>(dmalloc(4))};
      auto* f16 = static_cast<uint16_t*>(dmalloc(2 * n * 2));
      auto* old_scratch = static_cast<uint32_t*>(dmalloc(4));
      auto* scratch = static_cast<uint32_t*>(dmalloc(sc::prepare_scratch_bytes(rows)));
      check(cudaMemset(scratch, 0, sc::prepare_scratch_bytes(rows)), "scratch");
      const auto mode = sc::PrepareMode::kSharqNvfp4_24;
      const unsigned norm_threads = k >= 8192 ? 512 : 256;
      const std::function<void()> fns[kVariants] = {
          [&] { sc::prepare(mode, x, rows, k, sp, rs, nullptr, old_scratch, s, f16); },
          [&] {
            sc::prepare_fused(mode, x, rows, k, sp, rs, scratch, s, f16, nullptr,
                              sc::PrepareSchedule::kTwoKernel);
          },
          [&] {
            sc::prepare_fused(mode, x, rows, k, sp, rs, scratch, s, f16, nullptr,
                              sc::PrepareSchedule::kTwoKernelPdl);
          },
          [&] {
            sc::prepare_fused(mode, x, rows, k, sp, rs, scratch, s, f16, nullptr,
                              sc::PrepareSchedule::kSingleLaunch);
          },
          [&] {
            rmsnorm_kernel<<<unsigned(rows), norm_threads, 0, s>>>(x, w, 1e-5f, k, h);
            sc::prepare(mode, h, rows, k, sp, rs, nullptr, old_scratch, s, f16);
          },
          [&] {
            rmsnorm_kernel<<<unsigned(rows), norm_threads, 0, s>>>(x, w, 1e-5f, k, h);
            sc::prepare_fused(mode, h, rows, k, sp, rs, scratch, s, f16, nullptr,
                              sc::PrepareSchedule::kSingleLaunch);
          },
          [&] {
            sc::prepare_rmsnorm(mode, x, w, 1e-5f, rows, k, sp, rs, scratch, s, f16, nullptr,
                                nullptr, sc::PrepareSchedule::kSingleLaunch);
          },
          [&] {
            sc::prepare_rmsnorm(mode, x, w, 1e-5f, rows, k, sp, rs, scratch, s, f16, nullptr,
                                nullptr, sc::PrepareSchedule::kTwoKernel);
          },
          [&] {
            sc::prepare_rmsnorm(mode, x, w, 1e-5f, rows, k, sp, rs, scratch, s, f16, nullptr,
                                nullptr, sc::PrepareSchedule::kTwoKernelPdl);
          }};
      for (bool graph : {false, true}) {
        double t[kVariants];
        for (int v = 0; v < kVariants; ++v) t[v] = time_us(s, fns[v], graph);
        const char* timing = graph ? "graph" : "stream";
        std::printf("| %lld | %lld | %s |", (long long)rows, (long long)k, timing);
        for (double u : t) std::printf(" %.1f |", u);
        std::printf("\n");
        std::fflush(stdout);
        if (csv) {
          std::fprintf(csv, "%s,%lld,%lld,%s", prop.name, (long long)rows, (long long)k, timing);
          for (double u : t) std::fprintf(csv, ",%.2f", u);
          std::fprintf(csv, "\n");
        }
      }
      for (void* p : {(void*)x, (void*)h, (void*)sp.codes, (void*)sp.scales, (void*)sp.tensor_scale,
                      (void*)rs.codes, (void*)rs.scales, (void*)rs.tensor_scale, (void*)f16,
                      (void*)old_scratch, (void*)scratch}) {
        cudaFree(p);
      }
    }
    cudaFree(w);
  }
  if (csv) std::fclose(csv);
  std::printf(
      "\nMicroseconds per call (median of 15 loops of 20 calls). stream: back-to-back launches;\n"
      "graph: the 20 calls captured once and replayed. sharq-nvfp4-24, FP16 GEMM planes "
      "written.\n");
  return 0;
}
