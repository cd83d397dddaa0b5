// GPU benchmark harness (device machine): Llama-3.1-8B linear shapes x M, CUDA events, warm-up,
// median of repeated timed loops, weights rotated over enough copies that L2 cannot hold them.
// Columns measured in the same run: cuBLAS BF16, cuBLASLt FP8 (per-tensor), our dense NVFP4 and
// SharQ decode GEMMs (v1/v2 CUDA cores, v3 tensor cores), SharQ prepare and whole linears; plus
// the measured device copy bandwidth and the share of it SharQ v3 reaches. Prints CSV + table.
// Decode rows M = 1..32; prefill rows M = 128..8192 (gemm_prefill, last CSV column "prefill":
// their v3 columns hold gemm_prefill, the v1/v2 and bandwidth columns are -1). No cuSPARSELt.
// Decode rows also time, as the engine issues them (each loop captured once as a CUDA graph on a
// stream, so host launch cost is off the clock): cuBLAS BF16, cuBLASLt FP8, and the SharQ whole
// linear = prepare_fused (kAuto) + gemm_decode_mma with and without programmatic dependent
// launch of the GEMM. Prefill rows also time the engine's prefill paths: weight decode pass +
// cuBLAS FP16 GEMM per path, and for sharq-nvfp4-24 the one-launch 2:4 kernel (gemm_prefill_ws:
// the GEMM; the stage images expanded from prepare's packed outputs, CSV column
// sharq24_ws_repack_us, which until session 12 timed a repack of the FP16 planes; the engine's
// prepare_fused writing the stage images (no planes) + GEMM; that prepare alone), then cuBLAS
// BF16 once more (clock drift).
// Usage: bench_gemm [csv_path] [decode|prefill] (only those rows)
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "bench_common.cuh"
#include "sharq/cuda/kernels.h"
#include "sharq/synthetic.h"

using sharq::bench::dmalloc;
using sharq::bench::fill_random;
using sharq::bench::rotation_copies;
using sharq::cuda::check;

namespace {

// Median over `reps` of the mean time (us) of `inner` calls of fn(i).
double time_us(const std::function<void(int)>& fn, int inner = 20, int reps = 15) {
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  const double t = sharq::bench::median_calls_us(nullptr, a, b, fn, inner, reps);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return t;
}

__global__ void to_bf16(const float* x, __nv_bfloat16* y, size_t n) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < n) y[i] = __float2bfloat16_rn(x[i]);
}
__global__ void to_fp8(const float* x, __nv_fp8_e4m3* y, size_t n, float inv) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < n) y[i] = __nv_fp8_e4m3(x[i] * inv);
}

}  // namespace

int main(int argc, char** argv) {
  const char* csv_path = argc > 1 ? argv[1] : nullptr;
  const bool decode_only = argc > 2 && std::string(argv[2]) == "decode";
  const bool prefill_only = argc > 2 && std::string(argv[2]) == "prefill";
  cudaStream_t gs = nullptr;  // the graph-timed columns' stream
  check(cudaStreamCreateWithFlags(&gs, cudaStreamNonBlocking), "stream");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "props");
  const double bw = sharq::bench::copy_bandwidth_gbs();
  std::printf("device: %s, %d SMs, L2 %d MB; copy bandwidth %.0f GB/s (read+write)\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize >> 20, bw);
  cublasHandle_t blas;
  CUBLAS_OK(cublasCreate(&blas));
  void* blas_ws = dmalloc(32 << 20);  // a fixed workspace: cuBLAS calls are captured in graphs
  CUBLAS_OK(cublasSetWorkspace(blas, blas_ws, 32 << 20));
  cublasLtHandle_t lt;
  CUBLAS_OK(cublasLtCreate(&lt));
  void* lt_ws = dmalloc(32 << 20);

  FILE* csv = csv_path ? std::fopen(csv_path, "w") : nullptr;
  if (csv)
    std::fprintf(
        csv,
        "device,K,N,M,cublas_bf16_us,cublaslt_fp8_us,nvfp4_linear_us,sharq_prepare_us,"
        "sharq_gemm_us,sharq_linear_us,sharq_gemm_pct_bw,nvfp4_gemm_v3_us,nvfp4_linear_v3_us,"
        "sharq_gemm_v3_us,sharq_linear_v3_us,sharq_gemm_v3_pct_bw,gemm_kernel,"
        "graph_cublas_bf16_us,graph_cublaslt_fp8_us,graph_sharq_gemm_us,graph_sharq_linear_us,"
        "graph_sharq_linear_pdl_us,nvfp4_cublas_us,sharq_cublas_us,weight_decode_us,"
        "sharq24_ws_gemm_us,sharq24_ws_repack_us,sharq24_ws_linear_us,sharq24_ws_prepare_us,"
        "cublas_bf16_after_us,nvfp4_cublas_bf16out_us,merged_ch_kprime_frac,merged_ch_gemm_us,"
        "merged_ch_linear_us,merged_ch_prepare_us\n");
  std::printf(
      "\n| K | N | M | cuBLAS BF16 | cuBLASLt FP8 | NVFP4 GEMM v1/2 | SharQ GEMM v1/2 | NVFP4 GEMM "
      "v3 "
      "| SharQ GEMM v3 | v3 %% of copy BW | SharQ prepare | NVFP4 linear v3 | SharQ linear v3 | "
      "linear vs BF16 | linear vs FP8 "
      "|\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
      "---|\n");

  const std::pair<int64_t, int64_t> shapes[] = {
      {4096, 6144}, {4096, 4096}, {4096, 28672}, {14336, 4096}};
  // BENCH_DECODE_MS and BENCH_PREFILL_MS (e.g. "2048,8192") pick the decode and prefill rows: the
  // acceptance rows alone fit one device call with other work.
  auto rows_from_env = [](const char* var, std::vector<int64_t>& out) {
    const char* env = std::getenv(var);
    if (!env) return true;
    out.clear();
    for (const char* p = env; *p;) {
      char* end = nullptr;
      const long long v = std::strtoll(p, &end, 10);
      if (end == p || v < 1) {
        std::fprintf(stderr, "bench_gemm: %s=\"%s\" is not a list of M values\n", var, env);
        return false;
      }
      out.push_back(v);
      p = *end == ',' ? end + 1 : end;
    }
    return true;
  };
  std::vector<int64_t> ms = {1, 4, 8, 16, 32};
  std::vector<int64_t> prefill_ms = {128, 512, 2048, 8192};
  if (!rows_from_env("BENCH_DECODE_MS", ms) || !rows_from_env("BENCH_PREFILL_MS", prefill_ms))
    return 2;
  std::vector<std::string> prefill_rows, graph_rows, cublas_rows, rt_rows, merged_rows;
  for (const auto& shape : shapes) {
    const int64_t k = shape.first, n = shape.second;
    const size_t wn = size_t(n) * k;
    // Enough weight copies that the rotation exceeds L2 several times over.
    const int rot = rotation_copies(prop, wn / 2);
    std::vector<float*> wf(1);
    wf[0] = static_cast<float*>(dmalloc(wn * 4));
    fill_random(wf[0], wn, 7, 1.0f);
    std::vector<__nv_bfloat16*> wb(rot);
    std::vector<__nv_fp8_e4m3*> w8(rot);
    std::vector<sharq::cuda::Nvfp4View> wq32(rot), wq16(rot);
    uint32_t* scratch = static_cast<uint32_t*>(dmalloc(4));
    const int rot_bf16 = rotation_copies(prop, wn * 2);
    for (int r = 0; r < rot; ++r) {
      if (r < rot_bf16) {
        wb[r] = static_cast<__nv_bfloat16*>(dmalloc(wn * 2));
        to_bf16<<<unsigned((wn + 255) / 256), 256>>>(wf[0], wb[r], wn);
        w8[r] = static_cast<__nv_fp8_e4m3*>(dmalloc(wn));
        to_fp8<<<unsigned((wn + 255) / 256), 256>>>(wf[0], w8[r], wn, 100.0f);
      }
      for (auto* v : {&wq32[r], &wq16[r]}) {
        const int g = v == &wq32[r] ? 32 : 16;
        v->codes = static_cast<uint8_t*>(dmalloc(wn / 2));
        v->scales = static_cast<uint8_t*>(dmalloc(wn / g));
        v->tensor_scale = static_cast<float*>(dmalloc(4));
        sharq::cuda::pack_weight(wf[0], n, k, g, *v, scratch, nullptr);
      }
    }
    check(cudaDeviceSynchronize(), "weights");
    // cuBLASLt FP8 (E4M3 x E4M3 -> BF16, per-tensor scales of 1), TN layout as Hopper needs;
    // -1 when the heuristic finds no algorithm.
    auto time_fp8 = [&](int64_t m, const __nv_fp8_e4m3* x8, __nv_bfloat16* y, int inner, int reps,
                        cudaStream_t graph_stream = nullptr) {
      const float one = 1.0f, zero = 0.0f;
      double t = -1;
      cublasLtMatmulDesc_t op;
      CUBLAS_OK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
      cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
      CUBLAS_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
      CUBLAS_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
      cublasLtMatrixLayout_t la, lb, lc;
      CUBLAS_OK(cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, k, n, k));
      CUBLAS_OK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, k, m, k));
      CUBLAS_OK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, n, m, n));
      cublasLtMatmulPreference_t pref;
      CUBLAS_OK(cublasLtMatmulPreferenceCreate(&pref));
      size_t ws = 32 << 20;
      CUBLAS_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &ws, sizeof ws));
      cublasLtMatmulHeuristicResult_t heur{};
      int found = 0;
      if (cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 1, &heur, &found) ==
              CUBLAS_STATUS_SUCCESS &&
          found) {
        auto call = [&](int i) {
          CUBLAS_OK(cublasLtMatmul(lt, op, &one, w8[i % rot_bf16], la, x8, lb, &zero, y, lc, y, lc,
                                   &heur.algo, lt_ws, ws, graph_stream));
        };
        t = graph_stream ? sharq::bench::median_graph_us(graph_stream, call, inner, reps)
                         : time_us(call, inner, reps);
      }
      cublasLtMatmulPreferenceDestroy(pref);
      cublasLtMatrixLayoutDestroy(la);
      cublasLtMatrixLayoutDestroy(lb);
      cublasLtMatrixLayoutDestroy(lc);
      cublasLtMatmulDescDestroy(op);
      return t;
    };
    for (int64_t m : ms) {
      if (prefill_only) break;
      float* x = static_cast<float*>(dmalloc(size_t(m) * k * 4));
      fill_random(x, size_t(m) * k, 11, 50.0f);
      __nv_bfloat16* xb = static_cast<__nv_bfloat16*>(dmalloc(size_t(m) * k * 2));
      to_bf16<<<unsigned((m * k + 255) / 256), 256>>>(x, xb, size_t(m) * k);
      __nv_fp8_e4m3* x8 = static_cast<__nv_fp8_e4m3*>(dmalloc(size_t(m) * k));
      to_fp8<<<unsigned((m * k + 255) / 256), 256>>>(x, x8, size_t(m) * k, 1.0f);
      __nv_bfloat16* y = static_cast<__nv_bfloat16*>(dmalloc(size_t(m) * n * 2));
      float* dec = static_cast<float*>(dmalloc(size_t(m) * k * 4));
      uint16_t* xh = static_cast<uint16_t*>(dmalloc(size_t(2 * m) * k * 2));
      // The planes in the wgmma kernel's K order, and the order the engine would prepare.
      using sharq::cuda::PlaneOrder;
      const int64_t kw = sharq::cuda::plane_row_halves(k, PlaneOrder::kWgmma);
      uint16_t* xw = static_cast<uint16_t*>(dmalloc(size_t(2 * m) * kw * 2));
      const PlaneOrder order = sharq::cuda::decode_plane_order(m);
      uint16_t* xe = order == PlaneOrder::kWgmma ? xw : xh;
      sharq::cuda::Nvfp4View sp{static_cast<uint8_t*>(dmalloc(m * k / 2)),
                                static_cast<uint8_t*>(dmalloc(m * k / 32)),
                                static_cast<float*>(dmalloc(4))};
      sharq::cuda::Nvfp4View rs{static_cast<uint8_t*>(dmalloc(m * k / 2)),
                                static_cast<uint8_t*>(dmalloc(m * k / 16)),
                                static_cast<float*>(dmalloc(4))};
      const float one = 1.0f, zero = 0.0f;

      const double t_bf16 = time_us([&](int i) {
        CUBLAS_OK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &one,
                               wb[i % rot_bf16], CUDA_R_16BF, int(k), xb, CUDA_R_16BF, int(k),
                               &zero, y, CUDA_R_16BF, int(n), CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
      });

      const double t_fp8 = time_fp8(m, x8, y, 20, 15);

      auto* y16 = reinterpret_cast<uint16_t*>(y);
      const double t_nvfp4 = time_us([&](int i) {
        sharq::cuda::prepare(sharq::cuda::PrepareMode::kNvfp4, x, m, k, sp, rs, dec, scratch,
                             nullptr);
        sharq::cuda::gemm_decode(dec, rs.tensor_scale, m, wq16[i % rot], 16, n, k, y16, nullptr);
      });
      const double t_prep = time_us([&](int) {
        sharq::cuda::prepare(sharq::cuda::PrepareMode::kSharqNvfp4_24, x, m, k, sp, rs, dec,
                             scratch, nullptr);
      });
      const double t_gemm = time_us([&](int i) {
        sharq::cuda::gemm_decode(dec, rs.tensor_scale, m, wq32[i % rot], 32, n, k, y16, nullptr);
      });
      const double t_lin = time_us([&](int i) {
        sharq::cuda::prepare(sharq::cuda::PrepareMode::kSharqNvfp4_24, x, m, k, sp, rs, dec,
                             scratch, nullptr);
        sharq::cuda::gemm_decode(dec, rs.tensor_scale, m, wq32[i % rot], 32, n, k, y16, nullptr);
      });
      const double t_nvfp4_gemm = time_us([&](int i) {
        sharq::cuda::gemm_decode(dec, rs.tensor_scale, m, wq16[i % rot], 16, n, k, y16, nullptr);
      });
      // v2: prepare writes the FP16 planes the tensor-core kernel reads.
      sharq::cuda::prepare(sharq::cuda::PrepareMode::kNvfp4, x, m, k, sp, rs, nullptr, scratch,
                           nullptr, xh);
      const double t_nvfp4_v2 = time_us([&](int i) {
        sharq::cuda::gemm_decode_mma(xh, 1, rs.tensor_scale, m, wq16[i % rot], 16, n, k, y16,
                                     nullptr);
      });
      const double t_nvfp4_lin_v2 = time_us([&](int i) {
        sharq::cuda::prepare(sharq::cuda::PrepareMode::kNvfp4, x, m, k, sp, rs, nullptr, scratch,
                             nullptr, xh);
        sharq::cuda::gemm_decode_mma(xh, 1, rs.tensor_scale, m, wq16[i % rot], 16, n, k, y16,
                                     nullptr);
      });
      sharq::cuda::prepare(sharq::cuda::PrepareMode::kSharqNvfp4_24, x, m, k, sp, rs, nullptr,
                           scratch, nullptr, xw, PlaneOrder::kWgmma);
      sharq::cuda::prepare(sharq::cuda::PrepareMode::kSharqNvfp4_24, x, m, k, sp, rs, nullptr,
                           scratch, nullptr, xh);
      const double t_gemm_v2 = time_us([&](int i) {
        sharq::cuda::gemm_decode_mma(xh, 2, rs.tensor_scale, m, wq32[i % rot], 32, n, k, y16,
                                     nullptr);
      });
      const double t_lin_v2 = time_us([&](int i) {
        sharq::cuda::prepare(sharq::cuda::PrepareMode::kSharqNvfp4_24, x, m, k, sp, rs, nullptr,
                             scratch, nullptr, xh);
        sharq::cuda::gemm_decode_mma(xh, 2, rs.tensor_scale, m, wq32[i % rot], 32, n, k, y16,
                                     nullptr);
      });
      // The engine's way: graph replay, prepare_fused + the GEMM, with / without PDL.
      uint32_t* fscratch = static_cast<uint32_t*>(dmalloc(sharq::cuda::prepare_scratch_bytes(m)));
      check(cudaMemset(fscratch, 0, sharq::cuda::prepare_scratch_bytes(m)), "memset");
      check(cudaDeviceSynchronize(), "sync");
      const double g_bf16 = sharq::bench::median_graph_us(gs, [&](int i) {
        CUBLAS_OK(cublasSetStream(blas, gs));
        CUBLAS_OK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &one,
                               wb[i % rot_bf16], CUDA_R_16BF, int(k), xb, CUDA_R_16BF, int(k),
                               &zero, y, CUDA_R_16BF, int(n), CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
      });
      CUBLAS_OK(cublasSetStream(blas, nullptr));
      const double g_fp8 = time_fp8(m, x8, y, 20, 15, gs);
      auto engine_linear = [&](int i) {
        sharq::cuda::prepare_fused(sharq::cuda::PrepareMode::kSharqNvfp4_24, x, m, k, sp, rs,
                                   fscratch, gs, xe, nullptr, sharq::cuda::PrepareSchedule::kAuto,
                                   nullptr, order);
        sharq::cuda::gemm_decode_mma(xe, 2, rs.tensor_scale, m, wq32[i % rot], 32, n, k, y16, gs,
                                     order);
      };
      const double g_gemm = sharq::bench::median_graph_us(gs, [&](int i) {
        sharq::cuda::gemm_decode_mma(xe, 2, rs.tensor_scale, m, wq32[i % rot], 32, n, k, y16, gs,
                                     order);
      });
      {  // kernel variants: per-tile (M <= 8: one / two row tiles), shared activations (1 / 2
         // tiles, K split chosen per launch; 1 tile without a K split), wgmma from either order
        const double wb = double(wn) / 2 + double(wn) / 32;
        std::string row =
            "| " + std::to_string(k) + " | " + std::to_string(n) + " | " + std::to_string(m) + " |";
        struct Variant {
          int shared, rt;
          PlaneOrder order;
        };
        for (const Variant v : {Variant{0, 1, PlaneOrder::kMma}, Variant{0, 2, PlaneOrder::kMma},
                                Variant{1, 1, PlaneOrder::kMma}, Variant{1, 2, PlaneOrder::kMma},
                                Variant{-1, 0, PlaneOrder::kWgmma}, Variant{-1, 0, order}}) {
          if (v.shared == 0 && v.rt == 2 && m > 8) {
            row += " - |";
            continue;
          }
          sharq::cuda::testing::decode_gemm_shared_x(v.shared);
          sharq::cuda::testing::decode_gemm_row_tiles(v.rt);
          const uint16_t* xv = v.order == PlaneOrder::kWgmma ? xw : xh;
          const double us = sharq::bench::median_graph_us(gs, [&](int i) {
            sharq::cuda::gemm_decode_mma(xv, 2, rs.tensor_scale, m, wq32[i % rot], 32, n, k, y16,
                                         gs, v.order);
          });
          char cell[64];
          std::snprintf(cell, sizeof cell, " %.1f (%.0f%%) |", us,
                        100.0 * wb / (us * 1e-6) / (bw * 1e9));
          row += cell;
        }
        sharq::cuda::testing::decode_gemm_shared_x(-1);
        sharq::cuda::testing::decode_gemm_row_tiles(0);
        rt_rows.push_back(row + "\n");
      }
      sharq::cuda::testing::decode_gemm_pdl(false);
      const double g_lin = sharq::bench::median_graph_us(gs, engine_linear);
      sharq::cuda::testing::decode_gemm_pdl(true);
      const double g_lin_pdl = sharq::bench::median_graph_us(gs, engine_linear);
      cudaFree(fscratch);
      {
        char row[384];
        std::snprintf(row, sizeof row,
                      "| %lld | %lld | %lld | %.1f | %.1f | %.1f | %.1f | **%.1f** | %.2fx | "
                      "%.2fx |\n",
                      (long long)k, (long long)n, (long long)m, g_bf16, g_fp8, g_gemm, g_lin,
                      g_lin_pdl, g_bf16 / g_lin_pdl, g_fp8 > 0 ? g_fp8 / g_lin_pdl : 0.0);
        graph_rows.emplace_back(row);
      }
      // Share of the measured copy rate (bytes read + written per second) that the weight
      // stream reaches: the GEMM's DRAM traffic is almost all weight reads.
      const double wbytes = double(wn) / 2 + double(wn) / 32;
      const double pct = 100.0 * (wbytes / (t_gemm * 1e-6)) / (bw * 1e9);
      const double pct2 = 100.0 * (wbytes / (t_gemm_v2 * 1e-6)) / (bw * 1e9);
      std::printf(
          "| %lld | %lld | %lld | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f%% | %.1f | %.1f | "
          "%.1f | %.2fx | %.2fx |\n",
          (long long)k, (long long)n, (long long)m, t_bf16, t_fp8, t_nvfp4_gemm, t_gemm, t_nvfp4_v2,
          t_gemm_v2, pct2, t_prep, t_nvfp4_lin_v2, t_lin_v2, t_bf16 / t_lin_v2,
          t_fp8 > 0 ? t_fp8 / t_lin_v2 : 0.0);
      std::fflush(stdout);
      if (csv) {
        std::fprintf(
            csv,
            "%s,%lld,%lld,%lld,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%.1f,%.2f,%.2f,%.2f,%.2f,%.1f,"
            "decode_mma,%.2f,%.2f,%.2f,%.2f,%.2f,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1\n",
            prop.name, (long long)k, (long long)n, (long long)m, t_bf16, t_fp8, t_nvfp4, t_prep,
            t_gemm, t_lin, pct, t_nvfp4_v2, t_nvfp4_lin_v2, t_gemm_v2, t_lin_v2, pct2, g_bf16,
            g_fp8, g_gemm, g_lin, g_lin_pdl);
      }
      for (void* p : {(void*)x, (void*)xh, (void*)xb, (void*)x8, (void*)y, (void*)dec,
                      (void*)sp.codes, (void*)sp.scales, (void*)sp.tensor_scale, (void*)rs.codes,
                      (void*)rs.scales, (void*)rs.tensor_scale}) {
        cudaFree(p);
      }
    }
    // Prefill rows: compute-bound, fewer repetitions (an 8192 x 28672 x 4096 SharQ GEMM takes
    // milliseconds). FLOP rates count every path's multiply-adds (SharQ = 2 GEMMs of FLOPs).
    for (int64_t m : prefill_ms) {
      if (decode_only) break;
      constexpr int kInner = 5, kReps = 5;
      float* x = static_cast<float*>(dmalloc(size_t(m) * k * 4));
      fill_random(x, size_t(m) * k, 11, 50.0f);
      __nv_bfloat16* xb = static_cast<__nv_bfloat16*>(dmalloc(size_t(m) * k * 2));
      to_bf16<<<unsigned((m * k + 255) / 256), 256>>>(x, xb, size_t(m) * k);
      __nv_fp8_e4m3* x8 = static_cast<__nv_fp8_e4m3*>(dmalloc(size_t(m) * k));
      to_fp8<<<unsigned((m * k + 255) / 256), 256>>>(x, x8, size_t(m) * k, 1.0f);
      __nv_bfloat16* y = static_cast<__nv_bfloat16*>(dmalloc(size_t(m) * n * 2));
      auto* y16 = reinterpret_cast<uint16_t*>(y);
      uint16_t* xh = static_cast<uint16_t*>(dmalloc(size_t(2 * m) * k * 2));
      sharq::cuda::Nvfp4View sp{static_cast<uint8_t*>(dmalloc(m * k / 2)),
                                static_cast<uint8_t*>(dmalloc(m * k / 32)),
                                static_cast<float*>(dmalloc(4))};
      sharq::cuda::Nvfp4View rs{static_cast<uint8_t*>(dmalloc(m * k / 2)),
                                static_cast<uint8_t*>(dmalloc(m * k / 16)),
                                static_cast<float*>(dmalloc(4))};
      const float one = 1.0f, zero = 0.0f;
      auto time_bf16 = [&] {
        return time_us(
            [&](int i) {
              CUBLAS_OK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &one,
                                     wb[i % rot_bf16], CUDA_R_16BF, int(k), xb, CUDA_R_16BF, int(k),
                                     &zero, y, CUDA_R_16BF, int(n), CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
            },
            kInner, kReps);
      };
      const double t_bf16 = time_bf16();
      const double t_fp8 = time_fp8(m, x8, y, kInner, kReps);
      using sharq::cuda::PrepareMode;
      sharq::cuda::prepare(PrepareMode::kNvfp4, x, m, k, sp, rs, nullptr, scratch, nullptr, xh);
      const double t_nvfp4 = time_us(
          [&](int i) {
            sharq::cuda::gemm_prefill(xh, 1, rs.tensor_scale, m, wq16[i % rot], 16, n, k, y16,
                                      nullptr);
          },
          kInner, kReps);
      const double t_nvfp4_lin = time_us(
          [&](int i) {
            sharq::cuda::prepare(PrepareMode::kNvfp4, x, m, k, sp, rs, nullptr, scratch, nullptr,
                                 xh);
            sharq::cuda::gemm_prefill(xh, 1, rs.tensor_scale, m, wq16[i % rot], 16, n, k, y16,
                                      nullptr);
          },
          kInner, kReps);
      const double t_prep = time_us(
          [&](int) {
            sharq::cuda::prepare(PrepareMode::kSharqNvfp4_24, x, m, k, sp, rs, nullptr, scratch,
                                 nullptr, xh);
          },
          kInner, kReps);
      const double t_sharq = time_us(
          [&](int i) {
            sharq::cuda::gemm_prefill(xh, 2, rs.tensor_scale, m, wq32[i % rot], 32, n, k, y16,
                                      nullptr);
          },
          kInner, kReps);
      const double t_lin = time_us(
          [&](int i) {
            sharq::cuda::prepare(PrepareMode::kSharqNvfp4_24, x, m, k, sp, rs, nullptr, scratch,
                                 nullptr, xh);
            sharq::cuda::gemm_prefill(xh, 2, rs.tensor_scale, m, wq32[i % rot], 32, n, k, y16,
                                      nullptr);
          },
          kInner, kReps);
      // The engine's prefill: weight decode pass + one cuBLAS FP16 GEMM per path, float32 out.
      float* y32 = static_cast<float*>(dmalloc(size_t(m) * n * 4));
      void* pws = dmalloc(sharq::cuda::prefill_cublas_scratch_bytes(n, k));
      sharq::cuda::prepare(PrepareMode::kNvfp4, x, m, k, sp, rs, nullptr, scratch, nullptr, xh);
      const double t_nvfp4_cb = time_us(
          [&](int i) {
            sharq::cuda::gemm_prefill_cublas_f32(blas, xh, 1, rs.tensor_scale, m, wq16[i % rot], 16,
                                                 n, k, y32, pws, nullptr);
          },
          kInner, kReps);
      // The same product in the issue's output type, BF16 (BF16 planes, BF16 weight decode, the
      // baseline's own cuBLAS call), from the same nvfp4 prepare.
      sharq::cuda::expand_activation_planes_bf16(PrepareMode::kNvfp4, sp, rs, m, k, xh, nullptr);
      const double t_nvfp4_cb16 = time_us(
          [&](int i) {
            sharq::cuda::gemm_prefill_cublas_bf16(blas, xh, rs.tensor_scale, m, wq16[i % rot], 16,
                                                  n, k, y16, pws, nullptr);
          },
          kInner, kReps);
      sharq::cuda::prepare(PrepareMode::kSharqNvfp4_24, x, m, k, sp, rs, nullptr, scratch, nullptr,
                           xh);
      const double t_sharq_cb = time_us(
          [&](int i) {
            sharq::cuda::gemm_prefill_cublas_f32(blas, xh, 2, rs.tensor_scale, m, wq32[i % rot], 32,
                                                 n, k, y32, pws, nullptr);
          },
          kInner, kReps);
      const double t_wdec = time_us(
          [&](int i) {
            sharq::cuda::decode_weight_f16(
                wq32[i % rot], 32, n, k, static_cast<uint16_t*>(pws), rs.tensor_scale,
                reinterpret_cast<float*>(static_cast<uint8_t*>(pws) + size_t(n) * k * 2), nullptr);
          },
          kInner, kReps);
      // The engine's sharq-nvfp4-24 prefill: prepare writing the stage images (no FP16 planes),
      // then the warp-specialised 2:4 + dense kernel; the GEMM alone, that prepare alone, the
      // images expanded from the packed outputs instead (the engine's path when a prepare did
      // not write them) alone, and the whole linear.
      auto* img = static_cast<uint8_t*>(dmalloc(sharq::cuda::prefill_ws_act_bytes(m, k)));
      sharq::cuda::prefill_ws_images(sp, rs, m, k, img, nullptr);
      const double t_ws = time_us(
          [&](int i) {
            sharq::cuda::gemm_prefill_ws_f32(img, rs.tensor_scale, m, wq32[i % rot], n, k, y32,
                                             nullptr);
          },
          kInner, kReps);
      // The engine's prepare (prepare_fused, kAuto: max kernel publishing s_t, then the pass).
      auto* pscratch = static_cast<uint32_t*>(dmalloc(sharq::cuda::prepare_scratch_bytes(0)));
      check(cudaMemset(pscratch, 0, sharq::cuda::prepare_scratch_bytes(0)), "memset");
      const double t_ws_prep = time_us(
          [&](int) {
            sharq::cuda::prepare_fused(PrepareMode::kSharqNvfp4_24, x, m, k, sp, rs, pscratch,
                                       nullptr, nullptr, nullptr,
                                       sharq::cuda::PrepareSchedule::kAuto, img);
          },
          kInner, kReps);
      const double t_images = time_us(
          [&](int) { sharq::cuda::prefill_ws_images(sp, rs, m, k, img, nullptr); }, kInner, kReps);
      const double t_ws_lin = time_us(
          [&](int i) {
            sharq::cuda::prepare_fused(PrepareMode::kSharqNvfp4_24, x, m, k, sp, rs, pscratch,
                                       nullptr, nullptr, nullptr,
                                       sharq::cuda::PrepareSchedule::kAuto, img);
            sharq::cuda::gemm_prefill_ws_f32(img, rs.tensor_scale, m, wq32[i % rot], n, k, y32,
                                             nullptr);
          },
          kInner, kReps);
      // The merged-operand prefill (docs/merged_operand.md; sharq-nvfp4-24): the engine's prepare
      // writing kMmaRows planes and lo flags, then lo's columns found and compacted, the weight
      // decoded with its K' columns gathered, K' read back, one GEMM of K + K''. The compaction
      // works in place, so the whole linear is timed with its prepare each call; the GEMM alone
      // (decode + gather + GEMM) from the K' of a first run; columns + read-back = the rest.
      // Two inputs: the bench's (outliers scattered, every 997th element: a row's outliers land
      // in other columns than the next row's, lo's columns pile up) and LLM-like outlier
      // channels (sharq::synthetic_activation: the same few columns in every row, as in the
      // models' activations, docs/merged_operand.md).
      float* x_ch = static_cast<float*>(dmalloc(size_t(m) * k * 4));
      {
        const auto h = sharq::synthetic_activation(m, k, 12);
        check(cudaMemcpy(x_ch, h.data(), h.size() * 4, cudaMemcpyHostToDevice), "h2d");
      }
      const auto mg_planes = static_cast<uint16_t*>(dmalloc(size_t(2 * m) * k * 2));
      const auto mg_flags = static_cast<uint8_t*>(dmalloc(size_t(m) * k / 32));
      sharq::cuda::MergedColumns mg_cols{dmalloc(sharq::cuda::merged_columns_bytes(k))};
      check(cudaMallocHost(&mg_cols.kprime_host, sizeof(int32_t)), "cudaMallocHost");
      check(cudaEventCreateWithFlags(&mg_cols.copied, cudaEventDisableTiming), "cudaEventCreate");
      void* mg_ws = dmalloc(sharq::cuda::prefill_merged_scratch_bytes(n, k));
      struct MergedTimes {
        double kfrac, gemm, lin, prep;
      };
      auto merged_times = [&](const float* xin) {
        auto prep = [&] {
          sharq::cuda::prepare_fused(PrepareMode::kSharqNvfp4_24, xin, m, k, sp, rs, pscratch,
                                     nullptr, mg_planes, nullptr,
                                     sharq::cuda::PrepareSchedule::kAuto, nullptr,
                                     sharq::cuda::PlaneOrder::kMmaRows, mg_flags);
        };
        auto linear = [&](int i, int64_t* kp) {
          prep();
          sharq::cuda::merged_lo_columns(mg_planes, mg_flags, m, k, mg_cols, nullptr);
          sharq::cuda::gemm_prefill_merged_f32(blas, mg_planes, mg_cols, kp, rs.tensor_scale, m,
                                               wq32[i % rot], 32, n, k, y32, mg_ws, nullptr);
        };
        MergedTimes t{};
        t.lin = time_us(
            [&](int i) {
              int64_t kp = -1;
              linear(i, &kp);
            },
            kInner, kReps);
        t.prep = time_us([&](int) { prep(); }, kInner, kReps);
        int64_t kprime = -1;
        linear(0, &kprime);  // the planes compacted once more for the GEMM alone
        t.gemm = time_us(
            [&](int i) {
              sharq::cuda::gemm_prefill_merged_f32(blas, mg_planes, mg_cols, &kprime,
                                                   rs.tensor_scale, m, wq32[i % rot], 32, n, k, y32,
                                                   mg_ws, nullptr);
            },
            kInner, kReps);
        t.kfrac = double(kprime) / double(k);
        return t;
      };
      const MergedTimes mg[2] = {merged_times(x), merged_times(x_ch)};
      for (void* p : {(void*)x_ch, (void*)mg_planes, (void*)mg_flags, mg_cols.cols, mg_ws})
        cudaFree(p);
      cudaFreeHost(mg_cols.kprime_host);
      cudaEventDestroy(mg_cols.copied);
      // The baseline again after ours: the card's clocks drift with its temperature over a row's
      // runs (docs/RESULTS.md, issue 5, session 13).
      const double t_bf16_after = time_bf16();
      for (int i = 0; i < 2; ++i) {
        const double cols_gemm = mg[i].lin - mg[i].prep;
        char mgrow[400];
        std::snprintf(mgrow, sizeof mgrow,
                      "| %lld | %lld | %lld | %s | %.1f | %.1f%% | %.1f | %.2fx | %.1f | %.2fx | "
                      "%.1f | %.1f | %.2fx | %.1f | %.0f%% | %.1f | %.2fx | %.1f |\n",
                      (long long)k, (long long)n, (long long)m, i ? "channels" : "scattered",
                      t_bf16, 100.0 * mg[i].kfrac, mg[i].gemm, mg[i].gemm / t_bf16, cols_gemm,
                      cols_gemm / t_bf16, mg[i].prep, mg[i].lin, mg[i].lin / t_bf16, t_sharq_cb,
                      100.0 * mg[i].prep / cols_gemm, t_ws_lin, t_ws_lin / t_bf16, t_bf16_after);
        merged_rows.emplace_back(mgrow);
      }
      cudaFree(img);
      cudaFree(pscratch);
      cudaFree(y32);
      cudaFree(pws);
      char cbrow[400];
      std::snprintf(cbrow, sizeof cbrow,
                    "| %lld | %lld | %lld | %.1f | %.1f | %.2fx | %.1f | %.2fx | %.1f | %.2fx | "
                    "%.1f | %.1f | %.2fx | %.1f | %.1f | %.1f | %.2fx | %.1f |\n",
                    (long long)k, (long long)n, (long long)m, t_bf16, t_nvfp4_cb,
                    t_nvfp4_cb / t_bf16, t_nvfp4_cb16, t_nvfp4_cb16 / t_bf16, t_sharq_cb,
                    t_sharq_cb / t_bf16, t_wdec, t_ws, t_ws / t_bf16, t_ws_prep, t_images, t_ws_lin,
                    t_ws_lin / t_bf16, t_bf16_after);
      cublas_rows.emplace_back(cbrow);
      const double flop = 2.0 * double(m) * double(n) * double(k);
      char row[512];
      std::snprintf(
          row, sizeof row,
          "| %lld | %lld | %lld | %.1f | %.1f | %.1f | %.2fx | %.1f | %.2fx | %.0f | %.0f "
          "| %.1f | %.1f | %.2fx |\n",
          (long long)k, (long long)n, (long long)m, t_bf16, t_fp8, t_nvfp4, t_nvfp4 / t_bf16,
          t_sharq, t_sharq / t_bf16, flop / t_nvfp4 / 1e6, 2 * flop / t_sharq / 1e6, t_prep, t_lin,
          t_lin / t_bf16);
      prefill_rows.emplace_back(row);
      std::printf("prefill K=%lld N=%lld M=%lld: SharQ GEMM %.1f us (%.2fx cuBLAS BF16)\n",
                  (long long)k, (long long)n, (long long)m, t_sharq, t_sharq / t_bf16);
      std::fflush(stdout);
      if (csv) {
        std::fprintf(
            csv,
            "%s,%lld,%lld,%lld,%.2f,%.2f,-1,%.2f,-1,-1,-1,%.2f,%.2f,%.2f,%.2f,-1,prefill,-1,-1,-1,"
            "-1,-1,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%.4f,%.2f,%.2f,%.2f\n",
            prop.name, (long long)k, (long long)n, (long long)m, t_bf16, t_fp8, t_prep, t_nvfp4,
            t_nvfp4_lin, t_sharq, t_lin, t_nvfp4_cb, t_sharq_cb, t_wdec, t_ws, t_images, t_ws_lin,
            t_ws_prep, t_bf16_after, t_nvfp4_cb16, mg[1].kfrac, mg[1].gemm, mg[1].lin, mg[1].prep);
      }
      for (void* p :
           {(void*)x, (void*)xh, (void*)xb, (void*)x8, (void*)y, (void*)sp.codes, (void*)sp.scales,
            (void*)sp.tensor_scale, (void*)rs.codes, (void*)rs.scales, (void*)rs.tensor_scale}) {
        cudaFree(p);
      }
    }
    for (int r = 0; r < rot; ++r) {
      if (r < rot_bf16) {
        cudaFree(wb[r]);
        cudaFree(w8[r]);
      }
      for (auto* v : {&wq32[r], &wq16[r]}) {
        cudaFree(v->codes);
        cudaFree(v->scales);
        cudaFree(v->tensor_scale);
      }
    }
    cudaFree(wf[0]);
    cudaFree(scratch);
  }
  if (csv) std::fclose(csv);
  std::printf(
      "\nTimes in microseconds (median of 15 loops of 20 calls; weights rotated beyond L2).\n"
      "v3 %% of copy BW: FP4 weight + scale bytes per SharQ GEMM v3 time over the measured\n"
      "read+write device copy rate. Linear = prepare (tensor max + one pass) + GEMM.\n");
  std::printf(
      "\nDecode, as the engine issues it (each 20-call loop one CUDA graph; median of 15): SharQ "
      "linear = prepare_fused + gemm_decode_mma (sharq-nvfp4-24), without / with programmatic "
      "dependent launch of the GEMM\n\n| K | N | M | cuBLAS BF16 | cuBLASLt FP8 | SharQ GEMM | "
      "SharQ linear | SharQ linear, PDL | linear vs BF16 | linear vs FP8 |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& r : graph_rows) std::printf("%s", r.c_str());
  std::printf(
      "\nDecode SharQ GEMM kernels (sharq-nvfp4-24, bf16 out, graph-timed, us and %% of copy BW): "
      "per-tile = a block per weight tile, warps split K (1 or 2 16-row tiles per warp, the "
      "second for M <= 8 only); shared = warps on different tiles share each activation window "
      "through shared memory (K split over a cluster chosen per launch); wgmma = the shared "
      "kernel's tiles as one asynchronous m64nN product per warpgroup, weight in registers, "
      "from kWgmma planes; default = the engine's choice (decode_plane_order, then the "
      "per-launch kernel)\n\n"
      "| K | N | M | per-tile, 1 tile | per-tile, 2 tiles | shared, 1 tile | shared, 2 tiles | "
      "wgmma | default |\n"
      "|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& r : rt_rows) std::printf("%s", r.c_str());
  std::printf(
      "\nPrefill (gemm_prefill: FP4 weight tile decoded once to FP16 in shared memory, wgmma for "
      "both paths)\n\n| K | N | M | cuBLAS BF16 | cuBLASLt FP8 | NVFP4 GEMM | NVFP4 vs BF16 | "
      "SharQ "
      "GEMM | SharQ vs BF16 | NVFP4 TFLOPS | SharQ TFLOPS (2 paths) | SharQ prepare | SharQ "
      "linear | linear vs BF16 |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& r : prefill_rows) std::printf("%s", r.c_str());
  std::printf(
      "\nPrefill through cuBLAS (the engine's path for M > 32): FP4 weight decoded once per call "
      "to FP16 scratch, then one cuBLAS FP16 GEMM per path, float32 out; NVFP4 BF16 out: BF16 "
      "decode and planes, the baseline's cuBLAS BF16 call\n\n| K | N | M | cuBLAS "
      "BF16 | NVFP4 | NVFP4 vs BF16 | NVFP4 BF16 out | vs BF16 | SharQ (2 paths) | SharQ vs BF16 | "
      "weight decode alone "
      "| sharq-nvfp4-24 one launch (2:4 sparse + dense wgmma) | vs BF16 | its prepare (writing "
      "the stage images) | stage images expanded from the packed activation instead | "
      "sharq-nvfp4-24 linear (prepare + GEMM) | linear vs BF16 | cuBLAS BF16 again, after ours "
      "|\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& r : cublas_rows) std::printf("%s", r.c_str());
  std::printf(
      "\nPrefill, merged operand (sharq-nvfp4-24; docs/merged_operand.md): one cuBLAS FP16 GEMM of "
      "hi and lo compacted to its K' non-zero columns (K + K' rounded up to 16), float32 out. GEMM "
      "= weight decode + column gather + GEMM (K' known); with columns = that + finding and "
      "compacting lo's columns + reading K' back (a host wait for an event before the weight "
      "decode); linear = prepare + "
      "all of it. Inputs: the rows above (outliers scattered) and LLM-like outlier channels "
      "(CSV: channels)\n\n| K | N | M | input | cuBLAS BF16 | K'/K | merged GEMM | vs BF16 | GEMM "
      "with columns "
      "| vs BF16 | its prepare | merged linear | vs BF16 | two-path cuBLAS GEMM (for scale) | "
      "prepare / GEMM with columns | 2:4 one-launch linear | vs BF16 | cuBLAS BF16 again, after "
      "ours |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& r : merged_rows) std::printf("%s", r.c_str());
  std::printf(
      "\nPrefill times: median of 5 loops of 5 calls (us); vs BF16 = time ratio (lower is "
      "better).\n");
  return 0;
}
