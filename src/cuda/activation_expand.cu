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

namespace sharq::cuda {
namespace {

using prefill_ws::kBK;
using prefill_ws::kBM;
using prefill_ws::kE;
using prefill_ws::kR;
using prefill_ws::kS;

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
    prefill_ws::e2m1x8_natural(word, h);
  } else {
    e2m1x8_to_f16x2(word, h);
  }
  const __half2 s = __float2half2_rn(ue4m3_decode(scale)), up = __float2half2_rn(16384.0f);
#pragma unroll
  for (int j = 0; j < 4; ++j) h[j] = hmul2_u32(hmul2_u32(h[j], s), up);
  return make_uint4(h[0], h[1], h[2], h[3]);
}

// One thread per (32-block b, lane q): the planes of every path (backbone first, then residual;
// nvfp4 has the residual only, which holds the whole activation).
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
    if (sp_codes) {
      planes[at] = decode_lane<false>(sp_codes, __ldg(sp_scales + b), b, q, word);
      at += lanes;
    }
    planes[at] = decode_lane<false>(rs_codes, __ldg(rs_scales + 2 * b + q / 2), b, q, word);
  }
}

// The two kept values of 4-chunk c (elements 4c .. 4c + 3) of a natural-order 8-group v, and its
// metadata nibble (first index | second << 2, first < second), from the chunk's codes (a value is
// non-zero when its code's magnitude bits are and the block scale is). The backbone holds at most
// two non-zeros a chunk (its 2:4 mask); with fewer, the pair is completed with index 0 or 1,
// whose value is then zero. kPairs: the nibble for each 4-bit non-zero pattern (with more than
// two, the first and the last, which the 2:4 mask never leaves).
constexpr uint64_t kPairs = 0xCDCECDCC89884444ull;
__device__ __forceinline__ uint32_t compress4(const uint4& v, uint32_t word, bool scaled, int c,
                                              uint32_t& nibble) {
  const uint32_t x = word >> (16 * c);
  const uint32_t any = (x | (x >> 1) | (x >> 2)) & 0x1111u;  // bit 4i: element i is non-zero
  const uint32_t nz =
      scaled ? (any & 1u) | ((any >> 3) & 2u) | ((any >> 6) & 4u) | ((any >> 9) & 8u) : 0u;
  nibble = static_cast<uint32_t>(kPairs >> (4 * nz)) & 15u;
  const uint32_t i0 = nibble & 3u, i1 = nibble >> 2;
  // Bytes 2i, 2i + 1 of (hi:lo) hold element i of the chunk.
  const uint32_t sel = (2 * i0) | ((2 * i0 + 1) << 4) | ((2 * i1) << 8) | ((2 * i1 + 1) << 12);
  return c == 0 ? __byte_perm(v.x, v.y, sel) : __byte_perm(v.z, v.w, sel);
}

// One thread: rows r0 and r0 + 8 of a 16-row block, 16 consecutive K elements (two 8-groups) of
// one 64-wide step, i.e. one metadata word. Rows past m (the last tile's padding) get zeros and
// the pair (0, 1).
__global__ void images_kernel(const uint8_t* __restrict__ sp_codes,
                              const uint8_t* __restrict__ sp_scales,
                              const uint8_t* __restrict__ rs_codes,
                              const uint8_t* __restrict__ rs_scales, int64_t m, int64_t k,
                              uint8_t* __restrict__ rimg, uint8_t* __restrict__ simg,
                              uint32_t* __restrict__ eimg) {
  const int64_t units = prefill_ws::m_tiles(m) * kBM / 2 * (k / 16);
  const int nk = static_cast<int>(k / kBK);
  for (int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; u < units;
       u += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t h16 = u % (k / 16), pair = u / (k / 16);  // pair: (16-row block, row in 8)
    const int64_t r0 = (pair / 8) * 16 + pair % 8;
    const int ks = static_cast<int>(h16 / 4), gl = static_cast<int>(h16 % 4) * 2;
    const int64_t img = (r0 / kBM) * nk + ks;
    uint32_t word = 0;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t r = r0 + 8 * half;
      const int rr = static_cast<int>(r % kBM);
      uint32_t kept[4];
#pragma unroll
      for (int e = 0; e < 2; ++e) {  // 8-group gl + e: lane q of 32-block b
        const int g = gl + e;
        uint4 bb = make_uint4(0, 0, 0, 0), rs = make_uint4(0, 0, 0, 0);
        uint32_t codes = 0, sp_scale = 0;
        if (r < m) {
          const int64_t col = int64_t{ks} * kBK + 8 * g, b = r * (k / 32) + col / 32;
          const int q = static_cast<int>(col % 32) / 8;
          uint32_t unused;
          sp_scale = __ldg(sp_scales + b);
          bb = decode_lane<true>(sp_codes, sp_scale, b, q, codes);
          rs = decode_lane<true>(rs_codes, __ldg(rs_scales + 2 * b + q / 2), b, q, unused);
        }
        *reinterpret_cast<uint4*>(rimg + img * kR + rr * 128 + ((g ^ (rr & 7)) << 4)) = rs;
#pragma unroll
        for (int c4 = 0; c4 < 2; ++c4) {
          uint32_t nib;
          kept[2 * e + c4] = compress4(bb, codes, sp_scale != 0, c4, nib);
          word |= nib << (4 * (2 * e + c4) + 16 * half);
        }
      }
      *reinterpret_cast<uint4*>(simg + img * kS + rr * 64 + (((gl >> 1) ^ ((rr >> 1) & 3)) << 4)) =
          make_uint4(kept[0], kept[1], kept[2], kept[3]);
    }
    // Word (row block, k32 step, row in 8, half of the k32 step): docs/cuda_kernels.md.
    const int rb = static_cast<int>((r0 % kBM) / 16), j32 = gl / 4, hf = (gl % 4) / 2;
    eimg[img * (kE / 4) + rb * 32 + j32 * 16 + (r0 % 8) * 2 + hf] = word;
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

}  // namespace

void expand_activation_planes(PrepareMode mode, const Nvfp4View& sparse, const Nvfp4View& residual,
                              int64_t m, int64_t k, uint16_t* planes, cudaStream_t stream) {
  if (m < 1 || k <= 0 || k % 64 != 0 || m > (int64_t{1} << 24) || k > (int64_t{1} << 24))
    throw Error("cuda::expand_activation_planes: bad shape M x K = " + shape_str(m, k));
  const bool sharq = mode != PrepareMode::kNvfp4;
  check_views("expand_activation_planes", sparse, residual, sharq);
  if (reinterpret_cast<uintptr_t>(planes) & 15)
    throw Error("cuda::expand_activation_planes: planes not 16-byte aligned");
  planes_kernel<<<grid_for(m * k / 8), 256, 0, stream>>>(
      sharq ? sparse.codes : nullptr, sharq ? sparse.scales : nullptr, residual.codes,
      residual.scales, m, k, reinterpret_cast<uint4*>(planes));
  check(cudaGetLastError(), "expand_activation_planes");
}

void prefill_ws_images(const Nvfp4View& sparse, const Nvfp4View& residual, int64_t m, int64_t k,
                       uint8_t* images, cudaStream_t stream) {
  prefill_ws_act_bytes(m, k);  // throws on a bad shape
  check_views("prefill_ws_images", sparse, residual, true);
  if (reinterpret_cast<uintptr_t>(images) & 15)
    throw Error("cuda::prefill_ws_images: images not 16-byte aligned");
  const int64_t imgs = prefill_ws::image_count(m, k);
  images_kernel<<<grid_for(prefill_ws::m_tiles(m) * kBM / 2 * (k / 16)), 256, 0, stream>>>(
      sparse.codes, sparse.scales, residual.codes, residual.scales, m, k, images,
      images + imgs * kR, reinterpret_cast<uint32_t*>(images + imgs * (kR + kS)));
  check(cudaGetLastError(), "prefill_ws_images");
}

}  // namespace sharq::cuda
