// cuSPARSELt 2:4 baseline with the *activation* as the structured operand (the SharQ
// orientation): Y (M x N) = X_sp (M x K, 2:4 along K) . W^T, W (N x K) dense, on Llama-3.1-8B
// linear shapes. Activations change every call, so the prune and the compress are timed alone
// and together with the product. E4M3 (per-tensor scales folded into alpha) and BF16 inputs,
// BF16 output, FP32 accumulation; cuBLAS BF16 and cuBLASLt FP8 dense in the same run as the
// reference columns. M values cuSPARSELt rejects are padded (zero rows) to the first size it
// accepts; the CSV says which. CUDA events, warm-up, median of repeated loops, weights rotated
// over enough copies that L2 cannot hold them (as bench_gemm). Each sparse product is checked
// once against the dense library on the same pruned input.
// Usage: bench_sparselt [csv_path]
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <cusparseLt.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "bench_common.cuh"
#include "sharq/cuda/kernels.h"

using sharq::cuda::check;

namespace {

#define LT_OK(x)                                                                           \
  do {                                                                                     \
    cusparseStatus_t s_ = (x);                                                             \
    if (s_ != CUSPARSE_STATUS_SUCCESS) {                                                   \
      std::fprintf(stderr, "cuSPARSELt error %s at %s:%d\n", cusparseLtGetErrorString(s_), \
                   __FILE__, __LINE__);                                                    \
      std::exit(1);                                                                        \
    }                                                                                      \
  } while (0)

cudaStream_t g_stream;

// Median over `reps` of the mean time (us) of `inner` calls of fn(i); fewer calls for long ones.
double time_us(const std::function<void(int)>& fn, int inner = 20, int reps = 15) {
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  fn(0);
  check(cudaEventRecord(a, g_stream), "record");
  fn(1);
  check(cudaEventRecord(b, g_stream), "record");
  check(cudaEventSynchronize(b), "sync");
  float probe = 0;
  check(cudaEventElapsedTime(&probe, a, b), "elapsed");
  if (probe > 0.5f) {  // > 500 us per call: 5 x 7 is enough for a stable median
    inner = 5;
    reps = 7;
  }
  const double t = sharq::bench::median_calls_us(g_stream, a, b, fn, inner, reps);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return t;
}

void* dmalloc(size_t bytes) {
  return sharq::bench::dmalloc(std::max<size_t>(bytes, 16));
}

// Deterministic pseudo-normal fill on the device (a hash, Box-Muller); outlier columns x scale.
__global__ void fill_kernel(float* x, size_t n, int64_t cols, uint32_t seed, float outlier) {
  const size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  auto hash = [](uint32_t v) {
    v ^= v >> 16;
    v *= 0x7feb352du;
    v ^= v >> 15;
    v *= 0x846ca68bu;
    v ^= v >> 16;
    return v;
  };
  const uint32_t h1 = hash(uint32_t(i) * 2u + seed * 0x9E3779B9u + uint32_t(i >> 32));
  const uint32_t h2 = hash(h1 ^ 0x5bd1e995u);
  const float u1 = (h1 + 1.0f) * 2.3283064e-10f, u2 = h2 * 2.3283064e-10f;
  const float g = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
  x[i] = g * (((i % cols) % 997 == 0) ? outlier : 1.0f);
}
void fill(float* x, size_t n, int64_t cols, uint32_t seed, float outlier) {
  fill_kernel<<<unsigned((n + 255) / 256), 256, 0, g_stream>>>(x, n, cols, seed, outlier);
  check(cudaGetLastError(), "fill");
}
// (m x k) float -> (mp x k) bf16 / e4m3 (x * inv), rows m..mp-1 zero.
__global__ void to_bf16(const float* x, __nv_bfloat16* y, size_t n, size_t n_pad) {
  const size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
  if (i < n_pad) y[i] = __float2bfloat16_rn(i < n ? x[i] : 0.0f);
}
__global__ void to_fp8(const float* x, __nv_fp8_e4m3* y, size_t n, size_t n_pad, float inv) {
  const size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
  if (i < n_pad) y[i] = __nv_fp8_e4m3(i < n ? x[i] * inv : 0.0f);
}
__global__ void diff_kernel(const __nv_bfloat16* a, const __nv_bfloat16* b, size_t n, double* acc) {
  const size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const double x = __bfloat162float(a[i]), y = __bfloat162float(b[i]);
  atomicAdd(acc, (x - y) * (x - y));
  atomicAdd(acc + 1, y * y);
}
// ||a - b|| / ||b|| over the first n elements.
double rel_diff(const __nv_bfloat16* a, const __nv_bfloat16* b, size_t n) {
  double* acc = static_cast<double*>(dmalloc(16));
  check(cudaMemsetAsync(acc, 0, 16, g_stream), "memset");
  diff_kernel<<<unsigned((n + 255) / 256), 256, 0, g_stream>>>(a, b, n, acc);
  double h[2];
  check(cudaMemcpyAsync(h, acc, 16, cudaMemcpyDeviceToHost, g_stream), "d2h");
  check(cudaStreamSynchronize(g_stream), "sync");
  cudaFree(acc);
  return std::sqrt(h[0] / std::max(h[1], 1e-30));
}

int64_t round_up(int64_t v, int64_t m) {
  return (v + m - 1) / m * m;
}

// One cuSPARSELt problem: A = X_sp (mp x k, row-major, 2:4), B = W^T (k x n, column-major: W
// row-major as stored), D (mp x n, row-major, bf16).
struct SparsePlan {
  cusparseLtMatDescriptor_t a, b, c;
  cusparseLtMatmulDescriptor_t mm;
  cusparseLtMatmulAlgSelection_t sel;
  cusparseLtMatmulPlan_t plan;
  size_t ws_bytes = 0, comp_bytes = 0, comp_buf_bytes = 0;
  bool ok = false;
};

bool init_plan(const cusparseLtHandle_t* h, SparsePlan* p, cudaDataType in, int64_t mp, int64_t n,
               int64_t k) {
  if (cusparseLtStructuredDescriptorInit(h, &p->a, mp, k, k, 16, in, CUSPARSE_ORDER_ROW,
                                         CUSPARSELT_SPARSITY_50_PERCENT) !=
      CUSPARSE_STATUS_SUCCESS) {
    return false;
  }
  if (cusparseLtDenseDescriptorInit(h, &p->b, k, n, k, 16, in, CUSPARSE_ORDER_COL) !=
      CUSPARSE_STATUS_SUCCESS) {
    cusparseLtMatDescriptorDestroy(&p->a);
    return false;
  }
  LT_OK(cusparseLtDenseDescriptorInit(h, &p->c, mp, n, n, 16, CUDA_R_16BF, CUSPARSE_ORDER_ROW));
  const bool good =
      cusparseLtMatmulDescriptorInit(h, &p->mm, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                     CUSPARSE_OPERATION_NON_TRANSPOSE, &p->a, &p->b, &p->c, &p->c,
                                     CUSPARSE_COMPUTE_32F) == CUSPARSE_STATUS_SUCCESS &&
      cusparseLtMatmulAlgSelectionInit(h, &p->sel, &p->mm, CUSPARSELT_MATMUL_ALG_DEFAULT) ==
          CUSPARSE_STATUS_SUCCESS &&
      cusparseLtMatmulPlanInit(h, &p->plan, &p->mm, &p->sel) == CUSPARSE_STATUS_SUCCESS;
  if (!good) {
    cusparseLtMatDescriptorDestroy(&p->a);
    cusparseLtMatDescriptorDestroy(&p->b);
    cusparseLtMatDescriptorDestroy(&p->c);
    return false;
  }
  LT_OK(cusparseLtMatmulGetWorkspace(h, &p->plan, &p->ws_bytes));
  LT_OK(cusparseLtSpMMACompressedSize(h, &p->plan, &p->comp_bytes, &p->comp_buf_bytes));
  p->ok = true;
  return true;
}

void destroy_plan(SparsePlan* p) {
  if (!p->ok) return;
  cusparseLtMatmulPlanDestroy(&p->plan);
  cusparseLtMatmulAlgSelectionDestroy(&p->sel);
  cusparseLtMatDescriptorDestroy(&p->a);
  cusparseLtMatDescriptorDestroy(&p->b);
  cusparseLtMatDescriptorDestroy(&p->c);
  p->ok = false;
}

struct SparseTimes {
  int64_t mp = 0;  // padded M (0: no plan)
  double matmul = -1, prune = -1, compress = -1, total = -1, err = -1;
};

// Times one input type. x_dense: (mp x k) of `in`, w: rot copies (n x k) of `in`; y_ref:
// the dense library's Y on the *pruned* input, filled by `dense_on_pruned` (mp x n bf16).
SparseTimes run_sparse(const cusparseLtHandle_t* h, cudaDataType in, int64_t m, int64_t n,
                       int64_t k, void* x_dense, const std::vector<void*>& w, float alpha,
                       const std::function<void(const void* x_pruned, void* y)>& dense_on_pruned,
                       int64_t mp) {
  SparseTimes t;
  SparsePlan p;
  if (!init_plan(h, &p, in, mp, n, k)) return t;
  t.mp = mp;
  const size_t esize = in == CUDA_R_16BF ? 2 : 1;
  void* xp = dmalloc(size_t(mp) * k * esize);
  void* xc = dmalloc(p.comp_bytes);
  void* cbuf = dmalloc(p.comp_buf_bytes);
  void* ws = dmalloc(p.ws_bytes);
  void* y = dmalloc(size_t(mp) * n * 2);
  void* y_ref = dmalloc(size_t(mp) * n * 2);
  const float beta = 0.0f;
  LT_OK(cusparseLtSpMMAPrune(h, &p.mm, x_dense, xp, CUSPARSELT_PRUNE_SPMMA_STRIP, g_stream));
  LT_OK(cusparseLtSpMMACompress(h, &p.plan, xp, xc, cbuf, g_stream));
  LT_OK(cusparseLtMatmulSearch(h, &p.plan, &alpha, xc, w[0], &beta, y, y, ws, &g_stream, 1));
  LT_OK(cusparseLtMatmul(h, &p.plan, &alpha, xc, w[0], &beta, y, y, ws, &g_stream, 1));
  dense_on_pruned(xp, y_ref);
  t.err =
      rel_diff(static_cast<__nv_bfloat16*>(y), static_cast<__nv_bfloat16*>(y_ref), size_t(m) * n);
  const int rot = int(w.size());
  t.matmul = time_us([&](int i) {
    LT_OK(cusparseLtMatmul(h, &p.plan, &alpha, xc, w[i % rot], &beta, y, y, ws, &g_stream, 1));
  });
  t.prune = time_us([&](int) {
    LT_OK(cusparseLtSpMMAPrune(h, &p.mm, x_dense, xp, CUSPARSELT_PRUNE_SPMMA_STRIP, g_stream));
  });
  t.compress =
      time_us([&](int) { LT_OK(cusparseLtSpMMACompress(h, &p.plan, xp, xc, cbuf, g_stream)); });
  t.total = time_us([&](int i) {
    LT_OK(cusparseLtSpMMAPrune(h, &p.mm, x_dense, xp, CUSPARSELT_PRUNE_SPMMA_STRIP, g_stream));
    LT_OK(cusparseLtSpMMACompress(h, &p.plan, xp, xc, cbuf, g_stream));
    LT_OK(cusparseLtMatmul(h, &p.plan, &alpha, xc, w[i % rot], &beta, y, y, ws, &g_stream, 1));
  });
  for (void* q : {xp, xc, cbuf, ws, y, y_ref}) cudaFree(q);
  destroy_plan(&p);
  return t;
}

// First M' >= m that cuSPARSELt accepts for this problem (m itself when it does).
int64_t accepted_m(const cusparseLtHandle_t* h, cudaDataType in, int64_t m, int64_t n, int64_t k) {
  for (int64_t mult :
       {int64_t{1}, int64_t{8}, int64_t{16}, int64_t{32}, int64_t{64}, int64_t{128}}) {
    const int64_t mp = round_up(m, mult);
    SparsePlan p;
    if (init_plan(h, &p, in, mp, n, k)) {
      destroy_plan(&p);
      return mp;
    }
  }
  return 0;
}

// cuBLASLt FP8 dense: Y (mp x n, row-major = column-major n x mp) = alpha * W8 . X8^T in TN.
struct Fp8Dense {
  cublasLtHandle_t lt;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulHeuristicResult_t heur{};
  void* ws;
  size_t ws_bytes = 32 << 20;
  bool ok = false;
  Fp8Dense(cublasLtHandle_t lt_, void* ws_, int64_t m, int64_t n, int64_t k) : lt(lt_), ws(ws_) {
    CUBLAS_OK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CUBLAS_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    CUBLAS_OK(cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, k, n, k));
    CUBLAS_OK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, k, m, k));
    CUBLAS_OK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, n, m, n));
    cublasLtMatmulPreference_t pref;
    CUBLAS_OK(cublasLtMatmulPreferenceCreate(&pref));
    CUBLAS_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                   &ws_bytes, sizeof ws_bytes));
    int found = 0;
    ok = cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 1, &heur, &found) ==
             CUBLAS_STATUS_SUCCESS &&
         found > 0;
    cublasLtMatmulPreferenceDestroy(pref);
  }
  void run(const void* w8, const void* x8, void* y, float alpha) const {
    const float zero = 0.0f;
    CUBLAS_OK(cublasLtMatmul(lt, op, &alpha, w8, la, x8, lb, &zero, y, lc, y, lc, &heur.algo, ws,
                             ws_bytes, g_stream));
  }
  ~Fp8Dense() {
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(op);
  }
};

}  // namespace

int main(int argc, char** argv) {
  const char* csv_path = argc > 1 ? argv[1] : nullptr;
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "props");
  check(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking), "stream");
  cusparseLtHandle_t sp;
  LT_OK(cusparseLtInit(&sp));
  int lt_version = 0;
  cusparseLtGetVersion(&sp, &lt_version);
  std::printf("device: %s, %d SMs, L2 %d MB; cuSPARSELt %d (built against %d)\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize >> 20, lt_version, CUSPARSELT_VERSION);
  cublasHandle_t blas;
  CUBLAS_OK(cublasCreate(&blas));
  CUBLAS_OK(cublasSetStream(blas, g_stream));
  cublasLtHandle_t lt;
  CUBLAS_OK(cublasLtCreate(&lt));
  void* lt_ws = dmalloc(32 << 20);

  FILE* csv = csv_path ? std::fopen(csv_path, "w") : nullptr;
  if (csv) {
    std::fprintf(csv,
                 "device,K,N,M,cublas_bf16_us,cublaslt_fp8_us,"
                 "sp_bf16_M_padded,sp_bf16_matmul_us,sp_bf16_prune_us,sp_bf16_compress_us,"
                 "sp_bf16_total_us,sp_bf16_rel_err,"
                 "sp_fp8_M_padded,sp_fp8_matmul_us,sp_fp8_prune_us,sp_fp8_compress_us,"
                 "sp_fp8_total_us,sp_fp8_rel_err\n");
  }
  std::printf(
      "\n| K | N | M | cuBLAS BF16 | cuBLASLt FP8 | spLt BF16 M' | spLt BF16 matmul | prune | "
      "compress | prune+compress+matmul | spLt FP8 M' | spLt FP8 matmul | prune | compress | "
      "prune+compress+matmul | FP8 sparse matmul vs dense FP8 |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");

  const std::pair<int64_t, int64_t> shapes[] = {
      {4096, 6144}, {4096, 4096}, {4096, 28672}, {14336, 4096}};
  const int64_t ms[] = {1, 4, 16, 32, 128, 512, 2048, 8192};
  // Per-tensor FP8 scales: X (|x| up to ~80 with the outlier columns) is stored as x / 16, W
  // (N(0, 1)) as is, so alpha = s_x * s_w = 16.
  const float x_inv = 1.0f / 16.0f, alpha8 = 16.0f;
  for (const auto& shape : shapes) {
    const int64_t k = shape.first, n = shape.second;
    const size_t wn = size_t(n) * k;
    float* wf = static_cast<float*>(dmalloc(wn * 4));
    fill(wf, wn, k, 7, 1.0f);
    const int rot = sharq::bench::rotation_copies(prop, wn);
    std::vector<void*> wb(rot), w8(rot);
    for (int r = 0; r < rot; ++r) {
      wb[r] = dmalloc(wn * 2);
      w8[r] = dmalloc(wn);
      to_bf16<<<unsigned((wn + 255) / 256), 256, 0, g_stream>>>(wf, (__nv_bfloat16*)wb[r], wn, wn);
      to_fp8<<<unsigned((wn + 255) / 256), 256, 0, g_stream>>>(wf, (__nv_fp8_e4m3*)w8[r], wn, wn,
                                                               1.0f);
    }
    check(cudaStreamSynchronize(g_stream), "weights");
    cudaFree(wf);
    for (int64_t m : ms) {
      const int64_t mp_bf16 = accepted_m(&sp, CUDA_R_16BF, m, n, k);
      const int64_t mp_fp8 = accepted_m(&sp, CUDA_R_8F_E4M3, m, n, k);
      const int64_t mp = std::max({m, mp_bf16, mp_fp8});
      const size_t xn = size_t(m) * k, xn_pad = size_t(mp) * k;
      float* x = static_cast<float*>(dmalloc(xn * 4));
      fill(x, xn, k, 11 + uint32_t(m), 16.0f);
      auto* xb = static_cast<__nv_bfloat16*>(dmalloc(xn_pad * 2));
      auto* x8 = static_cast<__nv_fp8_e4m3*>(dmalloc(xn_pad));
      to_bf16<<<unsigned((xn_pad + 255) / 256), 256, 0, g_stream>>>(x, xb, xn, xn_pad);
      to_fp8<<<unsigned((xn_pad + 255) / 256), 256, 0, g_stream>>>(x, x8, xn, xn_pad, x_inv);
      void* y = dmalloc(size_t(mp) * n * 2);
      const float one = 1.0f, zero = 0.0f;
      auto cublas_bf16 = [&](const void* xin, void* yout, const void* wt, int64_t rows) {
        CUBLAS_OK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(rows), int(k), &one, wt,
                               CUDA_R_16BF, int(k), xin, CUDA_R_16BF, int(k), &zero, yout,
                               CUDA_R_16BF, int(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      };
      const double t_bf16 = time_us([&](int i) { cublas_bf16(xb, y, wb[i % rot], m); });
      double t_fp8 = -1;
      {
        Fp8Dense d(lt, lt_ws, m, n, k);
        if (d.ok) t_fp8 = time_us([&](int i) { d.run(w8[i % rot], x8, y, alpha8); });
      }
      SparseTimes sb, s8;
      if (mp_bf16 > 0) {
        sb = run_sparse(
            &sp, CUDA_R_16BF, m, n, k, xb, wb, 1.0f,
            [&](const void* xpr, void* yr) { cublas_bf16(xpr, yr, wb[0], mp_bf16); }, mp_bf16);
      }
      if (mp_fp8 > 0) {
        Fp8Dense d(lt, lt_ws, mp_fp8, n, k);
        s8 = run_sparse(
            &sp, CUDA_R_8F_E4M3, m, n, k, x8, w8, alpha8,
            [&](const void* xpr, void* yr) {
              if (d.ok) d.run(w8[0], xpr, yr, alpha8);
            },
            mp_fp8);
      }
      std::printf(
          "| %lld | %lld | %lld | %.1f | %.1f | %lld | %.1f | %.1f | %.1f | %.1f | %lld | %.1f | "
          "%.1f | %.1f | %.1f | %.2fx |\n",
          (long long)k, (long long)n, (long long)m, t_bf16, t_fp8, (long long)sb.mp, sb.matmul,
          sb.prune, sb.compress, sb.total, (long long)s8.mp, s8.matmul, s8.prune, s8.compress,
          s8.total, s8.matmul > 0 && t_fp8 > 0 ? t_fp8 / s8.matmul : 0.0);
      std::fflush(stdout);
      if (csv) {
        std::fprintf(csv,
                     "%s,%lld,%lld,%lld,%.2f,%.2f,%lld,%.2f,%.2f,%.2f,%.2f,%.2e,%lld,%.2f,%.2f,"
                     "%.2f,%.2f,%.2e\n",
                     prop.name, (long long)k, (long long)n, (long long)m, t_bf16, t_fp8,
                     (long long)sb.mp, sb.matmul, sb.prune, sb.compress, sb.total, sb.err,
                     (long long)s8.mp, s8.matmul, s8.prune, s8.compress, s8.total, s8.err);
        std::fflush(csv);
      }
      if (sb.err > 2e-2 || s8.err > 5e-2) {
        std::printf("WARNING: sparse vs dense on the pruned input: bf16 %.2e, fp8 %.2e\n", sb.err,
                    s8.err);
      }
      for (void* p : {(void*)x, (void*)xb, (void*)x8, y}) cudaFree(p);
    }
    for (int r = 0; r < rot; ++r) {
      cudaFree(wb[r]);
      cudaFree(w8[r]);
    }
  }
  if (csv) std::fclose(csv);
  std::printf(
      "\nMicroseconds per call (median; 15 loops of 20 calls, 7 of 5 above 0.5 ms; weights "
      "rotated\n"
      "beyond L2). M' = M as cuSPARSELt ran it (padded with zero rows where it rejected M).\n"
      "prune = cusparseLtSpMMAPrune (strip 2:4 along K), compress = cusparseLtSpMMACompress:\n"
      "both run per call because the activation changes every call. rel_err (CSV): sparse\n"
      "product vs the dense library on the same pruned input.\n");
  cusparseLtDestroy(&sp);
  return 0;
}
