// Prefill through cuBLAS (the engine's default for M > 32): the FP4 weight is decoded once per
// call into an FP16 scratch, then each activation path is one FP16 tensor-core GEMM (FP32
// accumulation) into the same float32 output, the second with beta = 1. Exact operands: E2M1 x
// UE4M3 x 2^-14 is an FP16 value (the decode trick of gemm_decode_mma, same 0,4,1,5,2,6,3,7
// order inside each 8-group as prepare's planes, so A and B are permuted alike along K).
// Why: Hopper has no FP4 MMA, so at large M the product is an FP16 GEMM whatever the kernel; the
// one-launch gemm_prefill pays its in-loop decode on every token tile (M / 128 times per weight
// tile) and measured 2.8-2.95x cuBLAS BF16, where a decode pass per call costs one stream over
// the weight. gemm_prefill_cublas_bf16 is the one-path product in BF16 out (the issue's output
// type): BF16 decode, BF16 planes, the BF16 baseline's own GEMM call.
#include <cublas_v2.h>
#include <cuda_fp16.h>

#include <string>

#include "codecs.cuh"
#include "cublas_scope.cuh"
#include "fp4_decode.cuh"
#include "sharq/cuda/kernels.h"
#include "sharq/cuda/weight_layout.h"
#include "sharq/error.h"

namespace sharq::cuda {
namespace {

// Each thread decodes kWordsPerThread words of 8 codes (8 FP16 values, 16 bytes stored each),
// kDecodeThreads apart, so every load and store instruction of a warp covers one contiguous run
// (128 bytes of codes, 512 of output). The pass is bound by its bytes; one word a thread kept too
// few loads in flight (19.3 us for 43 MB at 4096 x 4096, 2.2 TB/s), and one 32-block a thread
// (four adjacent words) scattered each store over 64-byte strides and ran 1.6-1.8x slower
// (docs/RESULTS.md, issue 5, session 14). A 2-D grid, rows on y (a grid-stride loop past 65535
// rows), so the row comes from the block's coordinates, not a 64-bit division per thread.
// Block (0, 0)'s thread 0 also writes the GEMM scalars {s_x * s_w * 2^14, 0, 1} (BF16: the
// values themselves, E2M1 x UE4M3, and {s_x * s_w, 0, 1}).
constexpr int kDecodeThreads = 128, kWordsPerThread = 4;

template <int WG, bool BF16>
__global__ void decode_weight_kernel(const uint8_t* __restrict__ codes,
                                     const uint8_t* __restrict__ scales, int64_t n, int64_t k,
                                     uint4* __restrict__ out, int64_t out_words,
                                     const float* __restrict__ sx, const float* __restrict__ sw,
                                     float* __restrict__ scalars) {
  if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) {
    scalars[0] = BF16 ? *sx * *sw : *sx * *sw * 16384.0f;  // 2^14: the subnormal placement
    scalars[1] = 0.0f;
    scalars[2] = 1.0f;
  }
  const int words = static_cast<int>(k / 8);
  const int first = static_cast<int>(blockIdx.x) * kDecodeThreads * kWordsPerThread +
                    static_cast<int>(threadIdx.x);
  for (int64_t row = blockIdx.y; row < n; row += gridDim.y) {
    uint32_t w[kWordsPerThread];
    uint8_t sc[kWordsPerThread];
#pragma unroll
    for (int i = 0; i < kWordsPerThread; ++i) {
      const int j = first + i * kDecodeThreads;
      if (j < words) {
        const int64_t c = weight_layout::code_offset(row, 8 * j, n, k);
        w[i] = __ldg(reinterpret_cast<const uint32_t*>(codes + c));
        sc[i] = __ldg(scales + weight_layout::scale_of_code(c, WG));
      }
    }
#pragma unroll
    for (int i = 0; i < kWordsPerThread; ++i) {
      const int j = first + i * kDecodeThreads;
      if (j >= words) break;
      const __half2 s = scale_h2(sc[i]);
      uint32_t h[4];
      e2m1x8_stored_to_f16x2(w[i], h);
#pragma unroll
      for (int t = 0; t < 4; ++t) {
        h[t] = hmul2_u32(h[t], s);
        if (BF16) h[t] = f16x2_to_bf16x2(h[t], 16384.0f);
      }
      out[row * out_words + j] = make_uint4(h[0], h[1], h[2], h[3]);
    }
  }
}

template <bool BF16>
void decode_weight(const char* who, const Nvfp4View& w, int w_group, int64_t n, int64_t k,
                   uint16_t* out, const float* x_tensor_scale, float* scalars, cudaStream_t stream,
                   int64_t out_ld = 0) {
  const std::string name = std::string("cuda::") + who;
  if (k <= 0 || k % 64 != 0 || n <= 0) throw Error(name + ": bad shape N x K = " + shape_str(n, k));
  if (out_ld == 0) out_ld = k;
  if (out_ld < k || out_ld % 8 != 0)
    throw Error(name + ": output rows " + std::to_string(out_ld) +
                " halves apart for K = " + std::to_string(k) + " (a multiple of 8, at least K)");
  if (w_group != 16 && w_group != 32) throw Error(name + ": weight group must be 16 or 32");
  if ((reinterpret_cast<uintptr_t>(w.codes) & 3) || (reinterpret_cast<uintptr_t>(out) & 15))
    throw Error(name + ": misaligned codes (4 bytes) or output (16 bytes)");
  if (k / 8 > 0x7fffffff) throw Error(name + ": K = " + std::to_string(k) + " too large");
  const int64_t per_block = kDecodeThreads * kWordsPerThread;
  const dim3 blocks(static_cast<unsigned>((k / 8 + per_block - 1) / per_block),
                    static_cast<unsigned>(n < 65535 ? n : 65535));
  auto* o = reinterpret_cast<uint4*>(out);
  auto kernel = w_group == 32 ? decode_weight_kernel<32, BF16> : decode_weight_kernel<16, BF16>;
  kernel<<<blocks, kDecodeThreads, 0, stream>>>(w.codes, w.scales, n, k, o, out_ld / 8,
                                                x_tensor_scale, w.tensor_scale, scalars);
  check(cudaGetLastError(), who);
}

void check_cublas_range(const char* who, int64_t m, int64_t n, int64_t k) {
  if (m < 1 || m > 0x7fffffff || n > 0x7fffffff || k > 0x7fffffff)
    throw Error(std::string("cuda::") + who + ": shape " + std::to_string(m) + " x " +
                shape_str(n, k) + " is outside cuBLAS's int range");
}

// The two entry points' common start: the shape checked against cuBLAS's int range, the scratch
// split into the decoded weight and the GEMM scalars, the decode pass, the handle on the stream.
struct DecodedWeight {
  const uint16_t* w;
  const float* scalars;
};

template <bool BF16>
DecodedWeight decode_for_cublas(const char* who, cublasHandle_t blas, int64_t m, const Nvfp4View& w,
                                int w_group, int64_t n, int64_t k, const float* x_tensor_scale,
                                void* scratch, cudaStream_t stream) {
  check_cublas_range(who, m, n, k);
  auto* wdec = static_cast<uint16_t*>(scratch);
  auto* scalars = reinterpret_cast<float*>(static_cast<uint8_t*>(scratch) + n * k * 2);
  decode_weight<BF16>(BF16 ? "decode_weight_bf16" : "decode_weight_f16", w, w_group, n, k, wdec,
                      x_tensor_scale, scalars, stream);
  check_blas(cublasSetStream(blas, stream), "cublasSetStream");
  return {wdec, scalars};
}

}  // namespace

size_t prefill_cublas_scratch_bytes(int64_t n, int64_t k) {
  return static_cast<size_t>(n * k) * 2 + 256;
}

void decode_weight_f16(const Nvfp4View& w, int w_group, int64_t n, int64_t k, uint16_t* out,
                       const float* x_tensor_scale, float* scalars, cudaStream_t stream,
                       int64_t out_ld) {
  decode_weight<false>("decode_weight_f16", w, w_group, n, k, out, x_tensor_scale, scalars, stream,
                       out_ld);
}

void decode_weight_bf16(const Nvfp4View& w, int w_group, int64_t n, int64_t k, uint16_t* out,
                        const float* x_tensor_scale, float* scalars, cudaStream_t stream,
                        int64_t out_ld) {
  decode_weight<true>("decode_weight_bf16", w, w_group, n, k, out, x_tensor_scale, scalars, stream,
                      out_ld);
}

void gemm_prefill_cublas_f32(cublasHandle_t blas, const uint16_t* x_gemm_f16, int paths,
                             const float* x_tensor_scale, int64_t m, const Nvfp4View& w,
                             int w_group, int64_t n, int64_t k, float* y, void* scratch,
                             cudaStream_t stream, bool accumulate) {
  if (paths != 1 && paths != 2) throw Error("cuda::gemm_prefill_cublas: paths must be 1 or 2");
  const auto [wdec, scalars] = decode_for_cublas<false>(
      "gemm_prefill_cublas_f32", blas, m, w, w_group, n, k, x_tensor_scale, scratch, stream);
  const DevicePointerMode mode(blas);
  const auto N = static_cast<int>(n), M = static_cast<int>(m), K = static_cast<int>(k);
  for (int p = 0; p < paths; ++p) {
    // y^T (n, m) column-major = W~ (n, k) . X~_p^T: y is (m, n) row-major.
    check_blas(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, scalars, wdec, CUDA_R_16F, K,
                            x_gemm_f16 + static_cast<int64_t>(p) * m * k, CUDA_R_16F, K,
                            scalars + (p == 0 && !accumulate ? 1 : 2), y, CUDA_R_32F, N,
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
  }
}

void gemm_prefill_cublas_bf16(cublasHandle_t blas, const uint16_t* x_bf16,
                              const float* x_tensor_scale, int64_t m, const Nvfp4View& w,
                              int w_group, int64_t n, int64_t k, uint16_t* y_bf16, void* scratch,
                              cudaStream_t stream) {
  const auto [wdec, scalars] = decode_for_cublas<true>(
      "gemm_prefill_cublas_bf16", blas, m, w, w_group, n, k, x_tensor_scale, scratch, stream);
  const DevicePointerMode mode(blas);
  const auto N = static_cast<int>(n), M = static_cast<int>(m), K = static_cast<int>(k);
  // The same call as the BF16 baseline: FP32 accumulation, one rounding to BF16 at the end.
  check_blas(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, scalars, wdec, CUDA_R_16BF, K,
                          x_bf16, CUDA_R_16BF, K, scalars + 1, y_bf16, CUDA_R_16BF, N,
                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
             "cublasGemmEx");
}

}  // namespace sharq::cuda
