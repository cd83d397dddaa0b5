// Host helpers of the 2:4 GEMM probes (dev only): uploads, a timing loop and the cuBLAS FP16
// product they are checked and timed against.
#pragma once

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "wgmma_sp.cuh"

namespace sharq::dev {

inline void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "%s: cuBLAS status %d\n", what, static_cast<int>(s));
    std::exit(1);
  }
}

template <typename T>
T* upload(const std::vector<T>& v) {
  T* d = nullptr;
  check(cudaMalloc(&d, v.size() * sizeof(T)), "malloc");
  check(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
  return d;
}

// C (m, n) float = A (m, k) . W (n, k)^T, FP16 inputs, FP32 accumulation and output: the
// engine's prefill product.
inline void run_cublas(cublasHandle_t h, const __half* a, const __half* w, float* c, int m, int n,
                       int k) {
  const float one = 1.0f, zero = 0.0f;
  check(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w, CUDA_R_16F, k, a, CUDA_R_16F, k,
                     &zero, c, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx");
}

// Mean time of f over 20 calls after 3 warm-up calls (CUDA events), us.
template <typename F>
double time_us(F&& f) {
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "event");
  check(cudaEventCreate(&e1), "event");
  for (int i = 0; i < 3; ++i) f();
  constexpr int kReps = 20;
  check(cudaEventRecord(e0), "record");
  for (int i = 0; i < kReps; ++i) f();
  check(cudaEventRecord(e1), "record");
  check(cudaEventSynchronize(e1), "sync");
  float ms = 0.0f;
  check(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  return 1e3 * ms / kReps;
}

}  // namespace sharq::dev
