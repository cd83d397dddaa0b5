// Grouped decode products (device machine): the linears of one input as the engine runs them in a
// decode step - q/k/v (K 4096 -> 4096 + 1024 + 1024) and gate/up (K 4096 -> 2 x 14336) of
// Llama-3.1-8B - one launch per linear vs one launch per group, for the SharQ decode GEMM
// (gemm_decode_mma_f32 vs gemm_decode_mma_group_f32) and for cuBLAS BF16 (one GEMM per linear vs
// one GEMM over the side-by-side weights, whose output is split with 2-D copies when M > 1).
// Float32 outputs, as in the engine; every loop captured once as a CUDA graph; weights rotated
// beyond L2. Usage: bench_group [csv_path]
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench_common.cuh"
#include "sharq/cuda/kernels.h"

using sharq::bench::dmalloc;
using sharq::bench::fill_random;
using sharq::bench::median_graph_us;
using sharq::bench::rotation_copies;
using sharq::cuda::check;

namespace {

__global__ void to_bf16(const float* x, __nv_bfloat16* y, size_t n) {
  const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = __float2bfloat16_rn(x[i]);
}

struct Group {
  const char* name;
  int64_t k;
  std::vector<int64_t> n;
};

}  // namespace

int main(int argc, char** argv) {
  FILE* csv = argc > 1 ? std::fopen(argv[1], "w") : nullptr;
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "props");
  cublasHandle_t blas;
  CUBLAS_OK(cublasCreate(&blas));
  CUBLAS_OK(cublasSetStream(blas, s));
  void* blas_ws = dmalloc(32 << 20);
  CUBLAS_OK(cublasSetWorkspace(blas, blas_ws, 32 << 20));
  std::printf(
      "device: %s\n\n| group | M | cuBLAS BF16 per linear | cuBLAS BF16 one product | "
      "SharQ GEMM per linear | SharQ GEMM grouped | grouped, 1 row tile per warp | grouped, "
      "per-tile kernel | grouped vs per linear |\n"
      "|---|---|---|---|---|---|---|---|---|\n",
      prop.name);
  if (csv)
    std::fprintf(csv,
                 "device,group,M,bf16_separate_us,bf16_one_us,sharq_separate_us,"
                 "sharq_grouped_us\n");
  const Group groups[] = {{"qkv", 4096, {4096, 1024, 1024}}, {"gate_up", 4096, {14336, 14336}}};
  for (const Group& grp : groups) {
    const int64_t k = grp.k;
    int64_t n_sum = 0;
    for (int64_t n : grp.n) n_sum += n;
    const size_t wn = static_cast<size_t>(n_sum * k);
    float* wf = static_cast<float*>(dmalloc(wn * 4));
    fill_random(wf, wn, 7, 1.0f);
    const int rot = rotation_copies(prop, wn / 2), rot16 = rotation_copies(prop, wn * 2);
    uint32_t* scratch = static_cast<uint32_t*>(dmalloc(4));
    std::vector<sharq::cuda::Nvfp4View> wq(static_cast<size_t>(rot));
    std::vector<__nv_bfloat16*> wb(static_cast<size_t>(rot16));
    for (auto& v : wq) {
      v = {static_cast<uint8_t*>(dmalloc(wn / 2)), static_cast<uint8_t*>(dmalloc(wn / 32)),
           static_cast<float*>(dmalloc(4))};
      sharq::cuda::pack_weight(wf, n_sum, k, 32, v, scratch, nullptr);
    }
    for (auto& b : wb) {
      b = static_cast<__nv_bfloat16*>(dmalloc(wn * 2));
      to_bf16<<<static_cast<unsigned>((wn + 255) / 256), 256>>>(wf, b, wn);
    }
    check(cudaDeviceSynchronize(), "weights");
    for (const int64_t m : {1, 4, 8, 16, 32}) {
      float* x = static_cast<float*>(dmalloc(static_cast<size_t>(m * k) * 4));
      fill_random(x, static_cast<size_t>(m * k), 11, 50.0f);
      auto* xb = static_cast<__nv_bfloat16*>(dmalloc(static_cast<size_t>(m * k) * 2));
      to_bf16<<<static_cast<unsigned>((m * k + 255) / 256), 256>>>(x, xb, m * k);
      auto* xh = static_cast<uint16_t*>(dmalloc(static_cast<size_t>(2 * m * k) * 2));
      const sharq::cuda::Nvfp4View sp{static_cast<uint8_t*>(dmalloc(m * k / 2)),
                                      static_cast<uint8_t*>(dmalloc(m * k / 32)),
                                      static_cast<float*>(dmalloc(4))};
      const sharq::cuda::Nvfp4View rs{static_cast<uint8_t*>(dmalloc(m * k / 2)),
                                      static_cast<uint8_t*>(dmalloc(m * k / 16)),
                                      static_cast<float*>(dmalloc(4))};
      sharq::cuda::prepare(sharq::cuda::PrepareMode::kSharqNvfp4_24, x, m, k, sp, rs, nullptr,
                           scratch, nullptr, xh);
      float* y = static_cast<float*>(dmalloc(static_cast<size_t>(m * n_sum) * 4));
      float* y_all = static_cast<float*>(dmalloc(static_cast<size_t>(m * n_sum) * 4));
      check(cudaDeviceSynchronize(), "inputs");
      const float one = 1.0f, zero = 0.0f;
      auto bf16_gemm = [&](const __nv_bfloat16* w, int64_t n, float* out) {
        CUBLAS_OK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                               static_cast<int>(m), static_cast<int>(k), &one, w, CUDA_R_16BF,
                               static_cast<int>(k), xb, CUDA_R_16BF, static_cast<int>(k), &zero,
                               out, CUDA_R_32F, static_cast<int>(n), CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
      };
      const double bf16_sep = median_graph_us(s, [&](int i) {
        int64_t r0 = 0;
        for (int64_t n : grp.n) {
          bf16_gemm(wb[i % rot16] + r0 * k, n, y + r0 * m);
          r0 += n;
        }
      });
      const double bf16_one = median_graph_us(s, [&](int i) {
        bf16_gemm(wb[i % rot16], n_sum, m == 1 ? y : y_all);
        if (m == 1) return;  // one row: the outputs side by side are the product's row
        int64_t c0 = 0;
        for (int64_t n : grp.n) {
          check(cudaMemcpy2DAsync(y + c0 * m, n * 4, y_all + c0, n_sum * 4, n * 4, m,
                                  cudaMemcpyDeviceToDevice, s),
                "split");
          c0 += n;
        }
      });
      auto parts = [&](int i) {
        std::vector<sharq::cuda::DecodeGemmPart> p;
        int64_t r0 = 0;
        for (int64_t n : grp.n) {
          const sharq::cuda::Nvfp4View& v = wq[i % rot];
          p.push_back(
              {{v.codes + r0 * k / 2, v.scales + r0 * k / 32, v.tensor_scale}, n, y + r0 * m});
          r0 += n;
        }
        return p;
      };
      const double fp4_sep = median_graph_us(s, [&](int i) {
        for (const auto& p : parts(i)) {
          sharq::cuda::gemm_decode_mma_f32(xh, 2, rs.tensor_scale, m, p.w, 32, p.n, k,
                                           static_cast<float*>(p.y), s);
        }
      });
      auto grouped = [&](int i) {
        const auto p = parts(i);
        sharq::cuda::gemm_decode_mma_group_f32(xh, 2, rs.tensor_scale, m, p.data(),
                                               static_cast<int>(p.size()), 32, k, s);
      };
      const double fp4_grp = median_graph_us(s, grouped);
      sharq::cuda::testing::decode_gemm_row_tiles(1);
      const double fp4_grp_rt1 = median_graph_us(s, grouped);
      sharq::cuda::testing::decode_gemm_row_tiles(0);
      sharq::cuda::testing::decode_gemm_shared_x(0);  // the kernel M > 8 used before session 6
      const double fp4_grp_tile = median_graph_us(s, grouped);
      sharq::cuda::testing::decode_gemm_shared_x(-1);
      std::printf("| %s | %lld | %.1f | %.1f | %.1f | **%.1f** | %.1f | %.1f | %.2fx |\n", grp.name,
                  static_cast<long long>(m), bf16_sep, bf16_one, fp4_sep, fp4_grp, fp4_grp_rt1,
                  fp4_grp_tile, fp4_sep / fp4_grp);
      std::fflush(stdout);
      if (csv)
        std::fprintf(csv, "%s,%s,%lld,%.2f,%.2f,%.2f,%.2f\n", prop.name, grp.name,
                     static_cast<long long>(m), bf16_sep, bf16_one, fp4_sep, fp4_grp);
      for (void* p : {static_cast<void*>(x), static_cast<void*>(xb), static_cast<void*>(xh),
                      static_cast<void*>(y), static_cast<void*>(y_all),
                      static_cast<void*>(sp.codes), static_cast<void*>(sp.scales),
                      static_cast<void*>(sp.tensor_scale), static_cast<void*>(rs.codes),
                      static_cast<void*>(rs.scales), static_cast<void*>(rs.tensor_scale)}) {
        cudaFree(p);
      }
    }
    for (auto& v : wq) {
      cudaFree(v.codes);
      cudaFree(v.scales);
      cudaFree(v.tensor_scale);
    }
    for (auto* b : wb) cudaFree(b);
    cudaFree(wf);
    cudaFree(scratch);
  }
  if (csv) std::fclose(csv);
  cublasDestroy(blas);
  return 0;
}
