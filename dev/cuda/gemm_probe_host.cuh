// Host helpers of the 2:4 GEMM probes (dev only): uploads, a timing loop, the cuBLAS FP16
// product they are checked and timed against, and that check.
#pragma once

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace sharq::dev {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

inline void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "%s: cuBLAS status %d\n", what, static_cast<int>(s));
    std::exit(1);
  }
}

// The probes' start: names the device, lets `kernel` use `smem` bytes of dynamic shared memory,
// returns a cuBLAS handle.
template <typename Kernel>
cublasHandle_t start_probe(const char* name, Kernel kernel, int smem) {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "device");
  std::printf("%s on %s\n", name, prop.name);
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
        "smem attribute");
  cublasHandle_t h;
  check(cublasCreate(&h), "cublasCreate");
  return h;
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

// Checks our product against cuBLAS on the dense expansion of A (m, k) and W (n, k): `ours(c)`
// launches our kernel writing C (m, n) into c, which is poisoned first. Each element must lie
// within 1e-6 (times k / 4096 above 4096 terms) of its sum of |terms| (cuBLAS on the absolute
// values: two FP32 sums of k terms in different orders differ by a small multiple of 2^-24 of it).
// With `time`, also times both products. Prints one line; true if every element is within.
template <typename Run>
bool compare_with_cublas(cublasHandle_t h, const std::vector<__half>& a_dense,
                         const std::vector<__half>& w, int m, int n, int k, Run&& ours, bool time) {
  std::vector<__half> abs_a(a_dense), abs_w(w);
  for (auto& v : abs_a) v = __habs(v);
  for (auto& v : abs_w) v = __habs(v);
  __half *dad = upload(a_dense), *dw = upload(w), *daa = upload(abs_a), *daw = upload(abs_w);
  const size_t cn = static_cast<size_t>(m) * n;
  float *dc, *dr, *dm;
  check(cudaMalloc(&dc, cn * 4), "malloc");
  check(cudaMalloc(&dr, cn * 4), "malloc");
  check(cudaMalloc(&dm, cn * 4), "malloc");
  check(cudaMemset(dc, 0xFF, cn * 4), "poison");  // NaN: an unwritten element fails
  ours(dc);
  check(cudaGetLastError(), "launch");
  run_cublas(h, dad, dw, dr, m, n, k);
  run_cublas(h, daa, daw, dm, m, n, k);
  check(cudaDeviceSynchronize(), "run");
  std::vector<float> c(cn), r(cn), mag(cn);
  check(cudaMemcpy(c.data(), dc, cn * 4, cudaMemcpyDeviceToHost), "download");
  check(cudaMemcpy(r.data(), dr, cn * 4, cudaMemcpyDeviceToHost), "download");
  check(cudaMemcpy(mag.data(), dm, cn * 4, cudaMemcpyDeviceToHost), "download");
  size_t bad = 0;
  double worst = 0.0;
  const double tol = 1e-6 * std::max(1.0, k / 4096.0);  // rounding grows with the terms summed
  for (size_t i = 0; i < cn; ++i) {
    const double err = std::fabs(static_cast<double>(c[i]) - r[i]) / (mag[i] + 1e-30);
    if (!(err <= tol)) ++bad;
    if (std::isfinite(err) && err > worst) worst = err;
  }
  std::printf("M %d K %5d N %5d: vs cuBLAS max |diff| / sum|terms| %.2g, %zu wrong -> %s", m, k, n,
              worst, bad, bad == 0 ? "PASS" : "FAIL");
  if (time) {
    const double us_sp = time_us([&] { ours(dc); });
    const double us_cb = time_us([&] { run_cublas(h, dad, dw, dr, m, n, k); });
    const double flop = 2.0 * m * n * static_cast<double>(k);
    std::printf(
        "; sparse %.1f us (%.0f TFLOP/s dense-eq), cuBLAS FP16 dense %.1f us (%.0f TFLOP/s): "
        "%.2fx",
        us_sp, flop / us_sp * 1e-6, us_cb, flop / us_cb * 1e-6, us_cb / us_sp);
  }
  std::printf("\n");
  cudaFree(dad), cudaFree(dw), cudaFree(daa), cudaFree(daw);
  cudaFree(dc), cudaFree(dr), cudaFree(dm);
  return bad == 0;
}

}  // namespace sharq::dev
