// Prefill GEMM ladder (dev only, not built by CMake): checks tile/MMA variants of
// src/cuda/gemm_prefill.cu (and times its ablations) against a naive GPU reference, next to
// cuBLAS BF16 on the Llama-3.1-8B shapes. `prefill_variants prof` launches the default kernel
// once per path count (for ncu). Build, after the library:
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -fmad=false -Iinclude -Isrc/cuda
//     dev/cuda/prefill_variants.cu build-h-gemm/src/cuda/libsharq_cuda.a
//     build-h-gemm/src/libsharq_core.a -lcublas -o prefill_variants
#include <cublas_v2.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

#include "../../bench/cuda/bench_common.cuh"
#include "../../src/cuda/gemm_prefill.cu"

namespace dev {
using namespace sharq::cuda;
using sharq::bench::fill_random;

__global__ void ref_kernel(const __half* x, int paths, const float* sx, int m, const uint8_t* codes,
                           const uint8_t* scales, int group, const float* sw, int n, int k,
                           float* y) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x, tok = blockIdx.y;
  if (col >= n) return;
  const int perm[8] = {0, 4, 1, 5, 2, 6, 3, 7};
  double acc = 0;
  for (int p = 0; p < paths; ++p) {
    for (int kk = 0; kk < k; ++kk) {
      const int e = (kk & ~7) + perm[kk & 7];
      const uint8_t b = codes[(static_cast<int64_t>(col) * k + e) / 2];
      const uint32_t code = (e & 1) ? (b >> 4) : (b & 15);
      const float wv =
          e2m1_decode(code) * ue4m3_decode(scales[(static_cast<int64_t>(col) * k + e) / group]);
      acc +=
          static_cast<double>(__half2float(x[(static_cast<int64_t>(p) * m + tok) * k + kk])) * wv;
    }
  }
  y[static_cast<int64_t>(tok) * n + col] = static_cast<float>(acc * *sx * *sw);
}

template <typename T>
T* dalloc(size_t n) {
  void* p;
  check(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), "malloc");
  return static_cast<T*>(p);
}
__global__ void to_bf16(const float* x, __nv_bfloat16* y, size_t n) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < n) y[i] = __float2bfloat16_rn(x[i]);
}

double time_ms(const std::function<void()>& f, int reps = 10) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (int i = 0; i < 3; ++i) f();
  cudaEventRecord(a);
  for (int i = 0; i < reps; ++i) f();
  cudaEventRecord(b);
  cudaEventSynchronize(b);
  float ms;
  cudaEventElapsedTime(&ms, a, b);
  check(cudaGetLastError(), "timed");
  return ms / reps;
}

struct Problem {
  int64_t m, n, k;
  int paths, group;
  uint16_t* xh;
  float* sx;
  Nvfp4View w;
};

Problem make_problem(int64_t m, int64_t n, int64_t k, int paths) {
  Problem pr{m, n, k, paths, paths == 2 ? 32 : 16, nullptr, nullptr, {}};
  float* x = dalloc<float>(m * k);
  float* wf = dalloc<float>(n * k);
  fill_random(x, m * k, 11 + m, 50.0f);
  fill_random(wf, n * k, 7 + n, 1.0f);
  uint32_t* scratch = dalloc<uint32_t>(1);
  pr.w = {dalloc<uint8_t>(n * k / 2), dalloc<uint8_t>(n * k / pr.group), dalloc<float>(1)};
  pack_weight(wf, n, k, pr.group, pr.w, scratch, nullptr);
  Nvfp4View sp{dalloc<uint8_t>(m * k / 2), dalloc<uint8_t>(m * k / 32), dalloc<float>(1)};
  Nvfp4View rs{dalloc<uint8_t>(m * k / 2), dalloc<uint8_t>(m * k / 16), dalloc<float>(1)};
  pr.xh = dalloc<uint16_t>(paths * m * k);
  prepare(paths == 2 ? PrepareMode::kSharqNvfp4_24 : PrepareMode::kNvfp4, x, m, k, sp, rs, nullptr,
          scratch, nullptr, pr.xh);
  pr.sx = rs.tensor_scale;
  check(cudaDeviceSynchronize(), "problem");
  cudaFree(x);
  cudaFree(wf);
  cudaFree(sp.codes);
  cudaFree(sp.scales);
  cudaFree(rs.codes);
  cudaFree(rs.scales);
  return pr;
}

using Fn = std::function<void(const Problem&, float*)>;
struct Variant {
  const char* name;
  int paths;
  Fn fn;
};

template <int BN, int PATHS, int LEAD, Mma MMA, int GN = 8, int ABL = 0>
Variant variant(const char* name) {
  return {name, PATHS, [](const Problem& pr, float* y) {
            if (pr.group == 32)
              launch_cfg<BN, PATHS, 32, LEAD, MMA, float, ABL>(pr.xh, pr.sx, pr.m, pr.w, pr.n, pr.k,
                                                               y, GN, nullptr);
            else
              launch_cfg<BN, PATHS, 16, LEAD, MMA, float, ABL>(pr.xh, pr.sx, pr.m, pr.w, pr.n, pr.k,
                                                               y, GN, nullptr);
          }};
}

}  // namespace dev

int main(int argc, char** argv) {
  using namespace dev;
  if (argc > 1 && std::string(argv[1]) == "prof") {  // one launch per path count, for ncu
    for (int paths : {2, 1}) {
      Problem pr = make_problem(2048, 4096, 4096, paths);
      float* y = dalloc<float>(2048 * 4096);
      (paths == 2 ? variant<256, 2, 3, Mma::kWgmma>("") : variant<256, 1, 4, Mma::kWgmma>(""))
          .fn(pr, y);
      check(cudaDeviceSynchronize(), "prof");
    }
    return 0;
  }
  std::vector<Variant> vs = {
      variant<256, 2, 3, Mma::kWgmma>("wgmma 128x256 L3"),
      variant<256, 2, 3, Mma::kWgmma, 8, 1>("abl: no decode"),
      variant<256, 2, 3, Mma::kWgmma, 8, 2>("abl: no loads"),
      variant<256, 2, 3, Mma::kWgmma, 8, 3>("abl: mma only"),
      variant<256, 1, 4, Mma::kWgmma>("1p wgmma 128x256 L4"),
      variant<256, 1, 4, Mma::kWgmma, 8, 1>("1p abl: no decode"),
      variant<256, 1, 4, Mma::kWgmma, 8, 3>("1p abl: mma only"),
  };

  // Correctness (both groups per path count exercised by the 2-path g32 / 1-path g16 problems).
  bool all_ok = true;
  for (auto [m_, n_, k_] : {std::tuple<int64_t, int64_t, int64_t>{300, 392, 1024},
                            {3, 200, 192},
                            {1, 64, 64},
                            {2049, 640, 4096}}) {
    const int64_t m = m_, n = n_, k = k_;
    for (int paths : {1, 2}) {
      Problem pr = make_problem(m, n, k, paths);
      float* yref = dalloc<float>(m * n);
      float* y = dalloc<float>(m * n);
      ref_kernel<<<dim3(unsigned((n + 127) / 128), unsigned(m)), 128>>>(
          reinterpret_cast<const __half*>(pr.xh), paths, pr.sx, int(m), pr.w.codes, pr.w.scales,
          pr.group, pr.w.tensor_scale, int(n), int(k), yref);
      std::vector<float> hr(m * n), hy(m * n);
      check(cudaMemcpy(hr.data(), yref, m * n * 4, cudaMemcpyDeviceToHost), "d2h");
      for (auto& v : vs) {
        if (v.paths != paths) continue;
        check(cudaMemset(y, 0xFF, m * n * 4), "poison");
        v.fn(pr, y);
        check(cudaDeviceSynchronize(), v.name);
        check(cudaMemcpy(hy.data(), y, m * n * 4, cudaMemcpyDeviceToHost), "d2h");
        double num = 0, den = 0;
        bool nan = false;
        for (size_t i = 0; i < hy.size(); ++i) {
          if (std::isnan(hy[i])) nan = true;
          num += (hy[i] - hr[i]) * double(hy[i] - hr[i]);
          den += double(hr[i]) * hr[i];
        }
        const double err = std::sqrt(num / den);
        const bool abl = std::string(v.name).find("abl") != std::string::npos;
        const bool ok = !nan && err < 1e-5;
        if (abl) continue;
        all_ok &= ok;
        std::printf("check %-24s M=%lld N=%lld K=%lld: rel %.2e%s %s\n", v.name, (long long)m,
                    (long long)n, (long long)k, err, nan ? " NaN" : "", ok ? "ok" : "FAIL");
      }
      cudaFree(yref);
      cudaFree(y);
      cudaFree(pr.xh);
    }
  }
  std::printf("correctness: %s\n", all_ok ? "all ok" : "FAILURES");
  std::fflush(stdout);

  cublasHandle_t blas;
  cublasCreate(&blas);
  const std::pair<int64_t, int64_t> shapes[] = {
      {4096, 6144}, {4096, 4096}, {4096, 28672}, {14336, 4096}};
  for (int64_t m : {2048, 8192}) {
    for (auto [k_, n_] : shapes) {
      const int64_t k = k_, n = n_;
      if (m == 8192 && !(n == 4096 && k == 4096)) continue;
      __nv_bfloat16 *xb = dalloc<__nv_bfloat16>(m * k), *wb = dalloc<__nv_bfloat16>(n * k),
                    *yb = dalloc<__nv_bfloat16>(m * n);
      float* tmp = dalloc<float>(std::max(m, n) * k);
      fill_random(tmp, m * k, 1, 1.0f);
      to_bf16<<<unsigned((m * k + 255) / 256), 256>>>(tmp, xb, m * k);
      fill_random(tmp, n * k, 2, 1.0f);
      to_bf16<<<unsigned((n * k + 255) / 256), 256>>>(tmp, wb, n * k);
      cudaFree(tmp);
      const float one = 1, zero = 0;
      const double tb = time_ms([&] {
        cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &one, wb, CUDA_R_16BF,
                     int(k), xb, CUDA_R_16BF, int(k), &zero, yb, CUDA_R_16BF, int(n),
                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      });
      const double fl = 2.0 * m * n * k;
      std::printf("M=%lld K=%lld N=%lld cublas bf16 %.1f us (%.0f TF)\n", (long long)m,
                  (long long)k, (long long)n, tb * 1e3, fl / tb / 1e9);
      cudaFree(xb);
      cudaFree(wb);
      cudaFree(yb);
      float* y = dalloc<float>(m * n);
      for (int paths : {2, 1}) {
        Problem pr = make_problem(m, n, k, paths);
        for (auto& v : vs) {
          if (v.paths != paths) continue;
          if (m == 8192 && std::string(v.name).find("sync") != std::string::npos) continue;
          const double t = time_ms([&] { v.fn(pr, y); });
          std::printf("   %-24s %8.1f us  %.2fx bf16  (%.0f TF eff)\n", v.name, t * 1e3, t / tb,
                      paths * fl / t / 1e9);
        }
        cudaFree(pr.xh);
        cudaFree(pr.w.codes);
        cudaFree(pr.w.scales);
      }
      cudaFree(y);
      std::fflush(stdout);
    }
  }
  return 0;
}
