// Helpers shared by the GPU benchmark harnesses (bench_gemm, bench_sparselt, bench_prepare,
// bench_attention) and dev/cuda/prefill_variants: the cuBLAS status check, device allocation,
// the host random fill with outlier channels, the number of weight copies that rotate beyond L2,
// the timed loop (CUDA events, median of repeated loops) and the device copy rate. Each harness
// is one translation unit.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <random>
#include <vector>

#include "sharq/cuda/kernels.h"

// Exits with the location on a cuBLAS / cuBLASLt error (the caller includes cublas_v2.h).
#define CUBLAS_OK(x)                                                                   \
  do {                                                                                 \
    cublasStatus_t s_ = (x);                                                           \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                 \
      std::fprintf(stderr, "cuBLAS error %d at %s:%d\n", (int)s_, __FILE__, __LINE__); \
      std::exit(1);                                                                    \
    }                                                                                  \
  } while (0)

namespace sharq::bench {

inline void* dmalloc(size_t bytes) {
  void* p = nullptr;
  sharq::cuda::check(cudaMalloc(&p, bytes), "cudaMalloc");
  return p;
}

// n normal floats (seeded mt19937_64), every 997th element times `outlier`, copied to d.
inline void fill_random(float* d, size_t n, uint64_t seed, float outlier) {
  std::vector<float> h(n);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (size_t i = 0; i < n; ++i) h[i] = nd(rng) * ((i % 997 == 0) ? outlier : 1.0f);
  sharq::cuda::check(cudaMemcpy(d, h.data(), n * 4, cudaMemcpyHostToDevice), "h2d");
}

// Copies of a `bytes`-sized operand to rotate over so that the rotation exceeds L2 several
// times over (at least 2).
inline int rotation_copies(const cudaDeviceProp& prop, size_t bytes) {
  return std::max<int>(2, int((size_t(prop.l2CacheSize) * 4) / bytes + 1));
}

// Median over `reps` timed loops of the mean time (us) of one call, `inner` calls per loop:
// loop(r) issues loop r on stream s between the events a and b.
inline double median_loop_us(cudaStream_t s, cudaEvent_t a, cudaEvent_t b, int inner, int reps,
                             const std::function<void(int)>& loop) {
  using sharq::cuda::check;
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    check(cudaEventRecord(a, s), "record");
    loop(r);
    check(cudaEventRecord(b, s), "record");
    check(cudaEventSynchronize(b), "sync");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, a, b), "elapsed");
    t.push_back(1000.0 * ms / inner);
  }
  check(cudaGetLastError(), "timed kernels");
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Median over `reps` of the mean time (us) of one call fn(i), `inner` calls per loop, the way the
// engine issues them: the `inner` calls captured once as a CUDA graph on stream s (launch cost
// off the host) and the graph launched per loop. -1 when the calls cannot be captured.
inline double median_graph_us(cudaStream_t s, const std::function<void(int)>& fn, int inner = 20,
                              int reps = 15) {
  using sharq::cuda::check;
  cudaGraph_t g = nullptr;
  cudaGraphExec_t exec = nullptr;
  try {
    check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "capture");
    for (int i = 0; i < inner; ++i) fn(i);
    check(cudaStreamEndCapture(s, &g), "end capture");
    check(cudaGraphInstantiate(&exec, g, 0), "instantiate");
    check(cudaGraphDestroy(g), "graph destroy");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "graph capture failed: %s\n", e.what());
    cudaStreamEndCapture(s, &g);
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
    return -1.0;
  }
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  for (int w = 0; w < 2; ++w) check(cudaGraphLaunch(exec, s), "graph launch");  // warm-up
  const double t = median_loop_us(s, a, b, inner, reps,
                                  [&](int) { check(cudaGraphLaunch(exec, s), "graph launch"); });
  cudaGraphExecDestroy(exec);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return t;
}

// One random activation row (normal values, every 997th times 50) prepared for the SharQ decode
// GEMMs in sharq-nvfp4-24: prepare()'s FP16 planes (2, 1, k) in `planes`, the activation's
// tensor scale at `scale()` (the probes' M = 1 input).
struct PreparedRow {
  PreparedRow(int64_t k, uint32_t* scratch, uint64_t seed = 7) {
    namespace sc = sharq::cuda;
    x = static_cast<float*>(dmalloc(size_t(k) * 4));
    fill_random(x, size_t(k), seed, 50.0f);
    sp = {static_cast<uint8_t*>(dmalloc(k / 2)), static_cast<uint8_t*>(dmalloc(k / 32)),
          static_cast<float*>(dmalloc(4))};
    rs = {static_cast<uint8_t*>(dmalloc(k / 2)), static_cast<uint8_t*>(dmalloc(k / 16)),
          static_cast<float*>(dmalloc(4))};
    planes = static_cast<uint16_t*>(dmalloc(size_t(k) * 2 * 2));
    sc::prepare(sc::PrepareMode::kSharqNvfp4_24, x, 1, k, sp, rs, nullptr, scratch, nullptr,
                planes);
    sc::check(cudaDeviceSynchronize(), "prepare a row");
  }
  ~PreparedRow() {
    for (void* p : {(void*)x, (void*)sp.codes, (void*)sp.scales, (void*)sp.tensor_scale,
                    (void*)rs.codes, (void*)rs.scales, (void*)rs.tensor_scale, (void*)planes})
      cudaFree(p);
  }
  PreparedRow(const PreparedRow&) = delete;
  PreparedRow& operator=(const PreparedRow&) = delete;
  const float* scale() const { return rs.tensor_scale; }

  float* x;
  sharq::cuda::Nvfp4View sp, rs;  // the prepare's packed backbone and residual (unused here)
  uint16_t* planes;
};

// `inner` warm-up calls fn(i), then median_loop_us over loops of the calls fn(r * inner + i).
inline double median_calls_us(cudaStream_t s, cudaEvent_t a, cudaEvent_t b,
                              const std::function<void(int)>& fn, int inner, int reps) {
  for (int i = 0; i < inner; ++i) fn(i);  // warm-up
  return median_loop_us(s, a, b, inner, reps, [&](int r) {
    for (int i = 0; i < inner; ++i) fn(r * inner + i);
  });
}

// The device copy rate, GB/s of bytes read + written: a 1 GiB cudaMemcpyAsync on stream s
// (median_calls_us: 5 warm-up copies, then the median of 7 loops of 5).
inline double copy_bandwidth_gbs(cudaStream_t s = nullptr) {
  using sharq::cuda::check;
  const size_t bytes = size_t{1} << 30;
  void* a = dmalloc(bytes);
  void* b = dmalloc(bytes);
  check(cudaMemset(a, 1, bytes), "memset");
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "event");
  check(cudaEventCreate(&e1), "event");
  const double us = median_calls_us(
      s, e0, e1,
      [&](int) { check(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s), "copy"); }, 5, 7);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / (us * 1e-6) / 1e9;
}

}  // namespace sharq::bench
