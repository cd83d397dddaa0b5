// Prepare's packed activation (E2M1 codes and UE4M3 scales of each path) expanded into what the
// prefill products read, for products that did not have prepare write it directly:
// - expand_activation_planes: the FP16 GEMM planes prepare writes into gemm_f16 (the cuBLAS path);
// - prefill_ws_images: the warp-specialised 2:4 kernel's stage images (gemm_prefill_ws.cuh).
// Both read the packed form (about 0.56 bytes an element a path) instead of the planes (2 bytes),
// so a prefill whose products all take the 2:4 kernel never writes or reads FP16 planes.
// Every value is E2M1 x UE4M3, exact in FP16: the same bits as prepare's decode.
#include <cuda_fp16.h>

#include <algorithm>
#include <string>

#include "codecs.cuh"
#include "fp4_decode.cuh"
#include "gemm_prefill_ws.cuh"
#include "sharq/cuda/kernels.h"
#include "sharq/error.h"
#include "stage_images.cuh"

namespace sharq::cuda {
namespace {

// The 8 values of lane q (elements 8q .. 8q + 7) of 32-block b of one path, element i in nibble
// i of the lane's code word, as 4 FP16 pairs: in prepare's plane order (pair j = elements j,
// j + 4) or in natural order (pair j = elements 2j, 2j + 1). The integer decode gives code x
// 2^-14; times the UE4M3 scale it is E2M1 x UE4M3 x 2^-14, a multiple of 2^-24 (E2M1 steps by
// 1/2, UE4M3 by 2^-9) with at most 6 significant bits, so exact in FP16; times 2^14 it is exactly
// prepare's decode, E2M1 x UE4M3 (at most 2688).
template <bool NATURAL>
__device__ __forceinline__ uint4 decode_lane(const uint8_t* __restrict__ codes, uint32_t scale,
                                             int64_t b, int q, uint32_t& word) {
  word = __ldg(reinterpret_cast<const uint32_t*>(codes + b * 16) + q);
  uint32_t h[4];
  if (NATURAL) {
    e2m1x8_natural(word, h);
  } else {
    e2m1x8_to_f16x2(word, h);
  }
  const __half2 s = scale_h2(scale), up = __float2half2_rn(16384.0f);
#pragma unroll
  for (int j = 0; j < 4; ++j) h[j] = hmul2_u32(hmul2_u32(h[j], s), up);
  return make_uint4(h[0], h[1], h[2], h[3]);
}

// One thread per (32-block b, lane q): the planes of every path (backbone first, then residual;
// nvfp4 has the residual only, which holds the whole activation). BF16: the same values and
// layout in BF16 (gemm_prefill_cublas_bf16).
template <bool BF16>
__global__ void planes_kernel(const uint8_t* __restrict__ sp_codes,
                              const uint8_t* __restrict__ sp_scales,
                              const uint8_t* __restrict__ rs_codes,
                              const uint8_t* __restrict__ rs_scales, int64_t m, int64_t k,
                              uint4* __restrict__ planes) {
  const int64_t lanes = m * k / 8;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < lanes;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = e / 4;
    const int q = static_cast<int>(e % 4);
    int64_t at = e;  // the lane's 16 bytes in the first plane
    uint32_t word;
    auto store = [&](uint4 v) {
      if (BF16) {
        v = make_uint4(f16x2_to_bf16x2(v.x, 1.0f), f16x2_to_bf16x2(v.y, 1.0f),
                       f16x2_to_bf16x2(v.z, 1.0f), f16x2_to_bf16x2(v.w, 1.0f));
      }
      planes[at] = v;
    };
    if (sp_codes) {
      store(decode_lane<false>(sp_codes, __ldg(sp_scales + b), b, q, word));
      at += lanes;
    }
    store(decode_lane<false>(rs_codes, __ldg(rs_scales + 2 * b + q / 2), b, q, word));
  }
}

// One thread per 8-group (32-block b, lane q), rows below m; the last tile's padding rows are
// cleared before (stage_images::clear_padding).
__global__ void images_kernel(const uint8_t* __restrict__ sp_codes,
                              const uint8_t* __restrict__ sp_scales,
                              const uint8_t* __restrict__ rs_codes,
                              const uint8_t* __restrict__ rs_scales, int64_t m, int64_t k,
                              stage_images::Regions img) {
  const int64_t lanes = m * k / 8;  // even: pairs (e, e ^ 1) stay together in the loop
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < lanes;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = e / 4;
    const int q = static_cast<int>(e % 4);
    const uint32_t sp_scale = __ldg(sp_scales + b);
    uint32_t sp_word, rs_word;
    const uint4 bb = decode_lane<true>(sp_codes, sp_scale, b, q, sp_word);
    const uint4 rs = decode_lane<true>(rs_codes, __ldg(rs_scales + 2 * b + q / 2), b, q, rs_word);
    stage_images::write_group(img, k, b, q, bb, rs, sp_word, sp_scale != 0);
  }
}

void check_views(const char* who, const Nvfp4View& sparse, const Nvfp4View& residual,
                 bool need_sparse) {
  auto misaligned = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 3) != 0; };
  if (!residual.codes || !residual.scales || (need_sparse && (!sparse.codes || !sparse.scales)))
    throw Error(std::string("cuda::") + who + ": missing codes or scales");
  if (misaligned(residual.codes) || (need_sparse && misaligned(sparse.codes)))
    throw Error(std::string("cuda::") + who + ": codes not 4-byte aligned");
}

unsigned grid_for(int64_t threads) {
  return static_cast<unsigned>(std::clamp<int64_t>((threads + 255) / 256, 1, 65535));
}

void expand_planes(const char* who, bool bf16, PrepareMode mode, const Nvfp4View& sparse,
                   const Nvfp4View& residual, int64_t m, int64_t k, uint16_t* planes,
                   cudaStream_t stream) {
  if (m < 1 || k <= 0 || k % 64 != 0 || m > (int64_t{1} << 24) || k > (int64_t{1} << 24))
    throw Error(std::string("cuda::") + who + ": bad shape M x K = " + shape_str(m, k));
  const bool sharq = mode != PrepareMode::kNvfp4;
  check_views(who, sparse, residual, sharq);
  if (reinterpret_cast<uintptr_t>(planes) & 15)
    throw Error(std::string("cuda::") + who + ": planes not 16-byte aligned");
  auto kernel = bf16 ? planes_kernel<true> : planes_kernel<false>;
  kernel<<<grid_for(m * k / 8), 256, 0, stream>>>(
      sharq ? sparse.codes : nullptr, sharq ? sparse.scales : nullptr, residual.codes,
      residual.scales, m, k, reinterpret_cast<uint4*>(planes));
  check(cudaGetLastError(), who);
}

}  // namespace

void expand_activation_planes(PrepareMode mode, const Nvfp4View& sparse, const Nvfp4View& residual,
                              int64_t m, int64_t k, uint16_t* planes, cudaStream_t stream) {
  expand_planes("expand_activation_planes", false, mode, sparse, residual, m, k, planes, stream);
}

void expand_activation_planes_bf16(PrepareMode mode, const Nvfp4View& sparse,
                                   const Nvfp4View& residual, int64_t m, int64_t k,
                                   uint16_t* planes, cudaStream_t stream) {
  expand_planes("expand_activation_planes_bf16", true, mode, sparse, residual, m, k, planes,
                stream);
}

void prefill_ws_images(const Nvfp4View& sparse, const Nvfp4View& residual, int64_t m, int64_t k,
                       uint8_t* images, cudaStream_t stream) {
  prefill_ws_act_bytes(m, k);  // throws on a bad shape
  check_views("prefill_ws_images", sparse, residual, true);
  if (reinterpret_cast<uintptr_t>(images) & 15)
    throw Error("cuda::prefill_ws_images: images not 16-byte aligned");
  check(stage_images::clear_padding(images, m, k, stream), "prefill_ws_images padding");
  images_kernel<<<grid_for(m * k / 8), 256, 0, stream>>>(sparse.codes, sparse.scales,
                                                         residual.codes, residual.scales, m, k,
                                                         stage_images::regions(images, m, k));
  check(cudaGetLastError(), "prefill_ws_images");
}

}  // namespace sharq::cuda
