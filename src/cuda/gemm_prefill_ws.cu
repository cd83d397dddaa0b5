// The engine's sharq-nvfp4-24 prefill product (M > 32): prepare's FP16 planes regrouped into the
// warp-specialised GEMM's stage images (prefill_ws_repack), then one launch of that GEMM
// (gemm_prefill_ws.cuh, Cfg<1, 1, 0>): the 2:4 backbone on sparse wgmma and the residual on dense
// wgmma, both fed by one FP4 weight tile decoded once, one FP32 accumulator, one output write.
#include <cuda_fp16.h>

#include <algorithm>
#include <string>

#include "device_info.cuh"
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

__host__ __device__ int64_t m_tiles(int64_t m) {
  return (m + kBM - 1) / kBM;
}
// Stage images per region: one per (128-row tile, 64-wide K step); the residual images come
// first, then the backbone's kept values, then the metadata.
int64_t image_count(int64_t m, int64_t k) {
  return m_tiles(m) * (k / kBK);
}
// CTAs of the GEMM: 128 x 256 output tiles.
int64_t output_tiles(int64_t m, int64_t n) {
  return m_tiles(m) * ((n + prefill_ws::kBN - 1) / prefill_ws::kBN);
}

// Natural-order FP16 pairs from a plane's 16 bytes: pair word j holds elements (j, j + 4) of the
// 8-group (prepare's 0,4,1,5,2,6,3,7 order).
__device__ __forceinline__ uint4 natural8(uint4 w) {
  return make_uint4(__byte_perm(w.x, w.y, 0x5410), __byte_perm(w.z, w.w, 0x5410),
                    __byte_perm(w.x, w.y, 0x7632), __byte_perm(w.z, w.w, 0x7632));
}

// The two kept values of a 2:4 chunk (h: four FP16 bit patterns) and its metadata nibble (first
// index | second << 2, first < second). The backbone holds at most two non-zeros a chunk (its 2:4
// mask); when it holds fewer, the pair is completed with index 0 or 1, whose value is then zero.
__device__ __forceinline__ uint32_t compress4(const uint16_t (&h)[4], uint32_t& nibble) {
  int i0 = -1, i1 = -1;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if (h[i] & 0x7FFFu) {
      if (i0 < 0) {
        i0 = i;
      } else {
        i1 = i;
      }
    }
  }
  if (i0 < 0) {
    i0 = 0;
    i1 = 1;
  } else if (i1 < 0) {
    i1 = i0 == 0 ? 1 : i0;
    i0 = 0;
  }
  nibble = static_cast<uint32_t>(i0 | (i1 << 2));
  auto pick = [&](int i) -> uint32_t {  // selects, not an indexed (local-memory) load
    return i == 0 ? h[0] : i == 1 ? h[1] : i == 2 ? h[2] : h[3];
  };
  return pick(i0) | (pick(i1) << 16);
}

// One thread: rows r0 and r0 + 8 of a 16-row block, 16 consecutive K elements (two 8-groups) of
// one 64-wide step, i.e. one metadata word. Rows past m (the last tile's padding) get zeros and
// the pair (0, 1).
__global__ void repack_kernel(const uint4* __restrict__ planes, int64_t m, int64_t k,
                              uint8_t* __restrict__ rimg, uint8_t* __restrict__ simg,
                              uint32_t* __restrict__ eimg) {
  const int64_t units = m_tiles(m) * kBM / 2 * (k / 16);
  const int64_t plane = m * k / 8;  // uint4s per plane
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
      for (int e = 0; e < 2; ++e) {  // 8-group gl + e
        const int g = gl + e;
        uint4 bb = make_uint4(0, 0, 0, 0), rs = make_uint4(0, 0, 0, 0);
        if (r < m) {
          const int64_t at = r * (k / 8) + h16 * 2 + e;
          bb = natural8(planes[at]);
          rs = natural8(planes[plane + at]);
        }
        *reinterpret_cast<uint4*>(rimg + img * kR + rr * 128 + ((g ^ (rr & 7)) << 4)) = rs;
        const uint32_t w[4] = {bb.x, bb.y, bb.z, bb.w};
#pragma unroll
        for (int c4 = 0; c4 < 2; ++c4) {
          const uint16_t h[4] = {
              static_cast<uint16_t>(w[2 * c4]), static_cast<uint16_t>(w[2 * c4] >> 16),
              static_cast<uint16_t>(w[2 * c4 + 1]), static_cast<uint16_t>(w[2 * c4 + 1] >> 16)};
          uint32_t nib;
          kept[2 * e + c4] = compress4(h, nib);
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

void check_shape(const char* who, int64_t m, int64_t k) {
  if (m < 1 || m > (int64_t{1} << 24) || k <= 0 || k % kBK != 0 || k > (int64_t{1} << 24))
    throw Error(std::string("cuda::") + who + ": bad shape M x K = " + shape_str(m, k));
}

}  // namespace

bool prefill_ws_fills_device(int64_t m, int64_t n) {
  return 3 * output_tiles(m, n) >= 2 * static_cast<int64_t>(sm_count());
}

size_t prefill_ws_act_bytes(int64_t m, int64_t k) {
  check_shape("prefill_ws_act_bytes", m, k);
  return static_cast<size_t>(image_count(m, k)) * (kR + kS + kE);
}

void prefill_ws_repack(const uint16_t* x_gemm_f16, int64_t m, int64_t k, uint8_t* images,
                       cudaStream_t stream) {
  check_shape("prefill_ws_repack", m, k);
  if ((reinterpret_cast<uintptr_t>(x_gemm_f16) & 15) || (reinterpret_cast<uintptr_t>(images) & 15))
    throw Error("cuda::prefill_ws_repack: misaligned planes or images (16 bytes)");
  const int64_t imgs = image_count(m, k);
  const int64_t units = m_tiles(m) * kBM / 2 * (k / 16);  // as repack_kernel counts them
  const int blocks = static_cast<int>(std::min<int64_t>((units + 255) / 256, 65535));
  repack_kernel<<<blocks, 256, 0, stream>>>(reinterpret_cast<const uint4*>(x_gemm_f16), m, k,
                                            images, images + imgs * kR,
                                            reinterpret_cast<uint32_t*>(images + imgs * (kR + kS)));
  check(cudaGetLastError(), "prefill_ws_repack");
}

void gemm_prefill_ws_f32(const uint8_t* images, const float* x_tensor_scale, int64_t m,
                         const Nvfp4View& w, int64_t n, int64_t k, float* y, cudaStream_t stream,
                         bool accumulate) {
  check_shape("gemm_prefill_ws_f32", m, k);
  if (n <= 0 || n % 2 != 0 || n * k / 2 >= (int64_t{1} << 31))
    throw Error("cuda::gemm_prefill_ws_f32: bad shape N x K = " + shape_str(n, k) +
                " (N even, N K / 2 < 2^31)");
  if ((reinterpret_cast<uintptr_t>(images) & 15) || (reinterpret_cast<uintptr_t>(w.codes) & 15) ||
      (reinterpret_cast<uintptr_t>(w.scales) & 1) || (reinterpret_cast<uintptr_t>(y) & 7))
    throw Error(
        "cuda::gemm_prefill_ws_f32: misaligned operand (images, codes: 16 bytes; scales: 2; y: 8)");
  using C = prefill_ws::Cfg<1, 1, 0>;
  auto kernel = prefill_ws::sharq_prefill_ws_kernel<C, float>;
  static bool configured = false;  // the attribute is per function
  if (!configured) {
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmem),
          "gemm_prefill_ws smem");
    configured = true;
  }
  const int64_t imgs = image_count(m, k);
  prefill_ws::Params p{w.codes,
                       w.scales,
                       images,
                       images + imgs * kR,
                       images + imgs * (kR + kS),
                       y,
                       static_cast<int>(m),
                       static_cast<int>(n),
                       static_cast<int>(k),
                       1,
                       x_tensor_scale,
                       w.tensor_scale,
                       accumulate ? 1 : 0};
  const int64_t tiles = output_tiles(m, n);
  if (tiles > (int64_t{1} << 31) - 1) throw Error("cuda::gemm_prefill_ws_f32: too many tiles");
  kernel<<<static_cast<unsigned>(tiles), C::kThreads, C::kSmem, stream>>>(p);
  check(cudaGetLastError(), "gemm_prefill_ws_f32");
}

}  // namespace sharq::cuda
