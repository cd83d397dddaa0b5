// Tensor max, SharQ prepare and weight packing kernels (sm_90a). One thread per 32-element
// block of a row: it holds the block in registers, so mask, backbone quantization, residual and
// residual quantization are one pass over the activation after the tensor max (two launches).
// Codes and scales are bit-identical to the CPU reference (tests/cuda). Not the GEMM.
#include <cuda_fp16.h>

#include <cstdint>

#include "codecs.cuh"
#include "sharq/cuda/kernels.h"
#include "sharq/error.h"

namespace sharq::cuda {
namespace {

constexpr int kThreads = 256;

// scratch = max |x| as float bits (non-negative floats order like their bit patterns).
__global__ void absmax_kernel(const float* __restrict__ x, int64_t n, uint32_t* scratch) {
  float m = 0.0f;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride) {
    m = fmaxf(m, fabsf(x[i]));
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  if ((threadIdx.x & 31) == 0) atomicMax(scratch, __float_as_uint(m));
}

// s_t = a / 2688, or 1 for a = 0 (SPEC 3 NVFP4 step 1).
__device__ __forceinline__ float tensor_scale(const uint32_t* scratch) {
  const float a = __uint_as_float(*scratch);
  return a == 0.0f ? 1.0f : __fdiv_rn(a, 2688.0f);
}

__device__ __forceinline__ void load32(const float* p, float* v) {
  const float4* q = reinterpret_cast<const float4*>(p);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const float4 f = q[i];
    v[4 * i] = f.x;
    v[4 * i + 1] = f.y;
    v[4 * i + 2] = f.z;
    v[4 * i + 3] = f.w;
  }
}

__device__ __forceinline__ void store16(uint8_t* dst, const uint8_t* src) {
  uint4 u;
  u.x = src[0] | (src[1] << 8) | (src[2] << 16) | (static_cast<uint32_t>(src[3]) << 24);
  u.y = src[4] | (src[5] << 8) | (src[6] << 16) | (static_cast<uint32_t>(src[7]) << 24);
  u.z = src[8] | (src[9] << 8) | (src[10] << 16) | (static_cast<uint32_t>(src[11]) << 24);
  u.w = src[12] | (src[13] << 8) | (src[14] << 16) | (static_cast<uint32_t>(src[15]) << 24);
  *reinterpret_cast<uint4*>(dst) = u;
}

// 32 scaled-domain decodes -> FP16 (exact), each 8-group reordered 0,4,1,5,2,6,3,7.
__device__ __forceinline__ void store_gemm_f16(__half* dst, const float* d) {
  uint4* out = reinterpret_cast<uint4*>(dst);
#pragma unroll
  for (int grp = 0; grp < 4; ++grp) {
    uint32_t w[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const __half2 h = __floats2half2_rn(d[8 * grp + j], d[8 * grp + j + 4]);
      w[j] = *reinterpret_cast<const uint32_t*>(&h);
    }
    out[grp] = make_uint4(w[0], w[1], w[2], w[3]);
  }
}

// One 32-element block b (row-major chunk index) of the activation, already loaded into v and
// not yet scaled: scale by inv = rcp(s_t), mask, quantize both paths, write every output.
// MODE: 0 nvfp4, 1 sharq 4:8p, 2 sharq 2:4. Shared by every prepare schedule, so they cannot
// drift apart.
template <int MODE>
__device__ __forceinline__ void quantize_chunk(float* v, float inv, int64_t b, int64_t rows,
                                               int64_t k, const Nvfp4View& sparse,
                                               const Nvfp4View& residual, float* decoded,
                                               __half* gemm_f16) {
#pragma unroll
  for (int i = 0; i < 32; ++i) v[i] = __fmul_rn(v[i], inv);

  float dsp[32], r[32], dr[32];
  uint8_t codes[16];
  if (MODE == 0) {
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      dsp[i] = 0.0f;
      r[i] = v[i];
    }
  } else {
    float xsp[32];
    if (MODE == 1) {  // 4:8p: pairs scored by max |.|
#pragma unroll
      for (int g = 0; g < 32; g += 8) {
        const uint32_t keep = keep_two_of_four(
            fmaxf(fabsf(v[g]), fabsf(v[g + 1])), fmaxf(fabsf(v[g + 2]), fabsf(v[g + 3])),
            fmaxf(fabsf(v[g + 4]), fabsf(v[g + 5])), fmaxf(fabsf(v[g + 6]), fabsf(v[g + 7])));
#pragma unroll
        for (int i = 0; i < 8; ++i) xsp[g + i] = ((keep >> (i / 2)) & 1u) ? v[g + i] : 0.0f;
      }
    } else {  // 2:4 by |.|
#pragma unroll
      for (int g = 0; g < 32; g += 4) {
        const uint32_t keep =
            keep_two_of_four(fabsf(v[g]), fabsf(v[g + 1]), fabsf(v[g + 2]), fabsf(v[g + 3]));
#pragma unroll
        for (int i = 0; i < 4; ++i) xsp[g + i] = ((keep >> i) & 1u) ? v[g + i] : 0.0f;
      }
    }
    nvfp4_block<32>(xsp, codes, sparse.scales + b, dsp);
    store16(sparse.codes + b * 16, codes);
#pragma unroll
    for (int i = 0; i < 32; ++i) r[i] = __fsub_rn(v[i], dsp[i]);  // vs the *quantized* backbone
  }
  nvfp4_block<16>(r, codes, residual.scales + 2 * b, dr);
  nvfp4_block<16>(r + 16, codes + 8, residual.scales + 2 * b + 1, dr + 16);
  store16(residual.codes + b * 16, codes);
  if (gemm_f16) {
    const int64_t plane = rows * k;
    if (MODE == 0) {
      store_gemm_f16(gemm_f16 + b * 32, dr);
    } else {
      store_gemm_f16(gemm_f16 + b * 32, dsp);
      store_gemm_f16(gemm_f16 + plane + b * 32, dr);
    }
  }
  if (decoded) {
    float4* out = reinterpret_cast<float4*>(decoded + b * 32);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      out[i] = make_float4(
          __fadd_rn(dsp[4 * i], dr[4 * i]), __fadd_rn(dsp[4 * i + 1], dr[4 * i + 1]),
          __fadd_rn(dsp[4 * i + 2], dr[4 * i + 2]), __fadd_rn(dsp[4 * i + 3], dr[4 * i + 3]));
    }
  }
}

// x: (rows, k); one thread per 32-block.
template <int MODE>
__global__ void prepare_kernel(const float* __restrict__ x, int64_t rows, int64_t k,
                               const uint32_t* __restrict__ absmax, Nvfp4View sparse,
                               Nvfp4View residual, float* __restrict__ decoded,
                               __half* __restrict__ gemm_f16) {
  const int64_t blocks_per_row = k / 32;
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const float st = tensor_scale(absmax);
  if (b == 0) {
    *residual.tensor_scale = st;
    if (MODE != 0) *sparse.tensor_scale = st;
  }
  if (b >= rows * blocks_per_row) return;
  float v[32];
  load32(x + b * 32, v);
  quantize_chunk<MODE>(v, __frcp_rn(st), b, rows, k, sparse, residual, decoded, gemm_f16);
}

// w: (n, k); one thread per 32-block; GROUP 16 or 32.
template <int GROUP>
__global__ void pack_weight_kernel(const float* __restrict__ w, int64_t n, int64_t k,
                                   const uint32_t* __restrict__ absmax, Nvfp4View out) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const float st = tensor_scale(absmax);
  if (b == 0) *out.tensor_scale = st;
  if (b >= n * (k / 32)) return;
  const float inv = __frcp_rn(st);
  float v[32], deq[32];
  uint8_t codes[16];
  load32(w + b * 32, v);
#pragma unroll
  for (int i = 0; i < 32; ++i) v[i] = __fmul_rn(v[i], inv);
  if (GROUP == 32) {
    nvfp4_block<32>(v, codes, out.scales + b, deq);
  } else {
    nvfp4_block<16>(v, codes, out.scales + 2 * b, deq);
    nvfp4_block<16>(v + 16, codes + 8, out.scales + 2 * b + 1, deq + 16);
  }
  store16(out.codes + b * 16, codes);
}

void launch_absmax(const float* x, int64_t n, uint32_t* scratch, cudaStream_t stream) {
  check(cudaMemsetAsync(scratch, 0, sizeof(uint32_t), stream), "absmax memset");
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 132 * 8);
  absmax_kernel<<<static_cast<unsigned>(std::max<int64_t>(blocks, 1)), kThreads, 0, stream>>>(
      x, n, scratch);
  check(cudaGetLastError(), "absmax_kernel");
}

void check_shape(int64_t rows, int64_t k, const char* what) {
  if (rows < 0 || k <= 0 || k % 64 != 0) {
    throw Error(std::string(what) + ": shape " + shape_str(rows, k) +
                " needs K (columns) a positive multiple of 64");
  }
}

}  // namespace

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}

void prepare(PrepareMode mode, const float* x, int64_t rows, int64_t k, Nvfp4View sparse,
             Nvfp4View residual, float* decoded, uint32_t* absmax_scratch, cudaStream_t stream,
             uint16_t* gemm_f16) {
  auto* gh = reinterpret_cast<__half*>(gemm_f16);
  check_shape(rows, k, "cuda::prepare");
  launch_absmax(x, rows * k, absmax_scratch, stream);
  const int64_t blocks = rows * (k / 32);
  const unsigned grid =
      static_cast<unsigned>(std::max<int64_t>((blocks + kThreads - 1) / kThreads, 1));
  switch (mode) {
    case PrepareMode::kNvfp4:
      prepare_kernel<0><<<grid, kThreads, 0, stream>>>(x, rows, k, absmax_scratch, sparse, residual,
                                                       decoded, gh);
      break;
    case PrepareMode::kSharqNvfp4:
      prepare_kernel<1><<<grid, kThreads, 0, stream>>>(x, rows, k, absmax_scratch, sparse, residual,
                                                       decoded, gh);
      break;
    case PrepareMode::kSharqNvfp4_24:
      prepare_kernel<2><<<grid, kThreads, 0, stream>>>(x, rows, k, absmax_scratch, sparse, residual,
                                                       decoded, gh);
      break;
  }
  check(cudaGetLastError(), "prepare_kernel");
}

void pack_weight(const float* w, int64_t n, int64_t k, int group, Nvfp4View out,
                 uint32_t* absmax_scratch, cudaStream_t stream) {
  check_shape(n, k, "cuda::pack_weight");
  if (group != 16 && group != 32) throw Error("cuda::pack_weight: group must be 16 or 32");
  launch_absmax(w, n * k, absmax_scratch, stream);
  const int64_t blocks = n * (k / 32);
  const unsigned grid =
      static_cast<unsigned>(std::max<int64_t>((blocks + kThreads - 1) / kThreads, 1));
  if (group == 32) {
    pack_weight_kernel<32><<<grid, kThreads, 0, stream>>>(w, n, k, absmax_scratch, out);
  } else {
    pack_weight_kernel<16><<<grid, kThreads, 0, stream>>>(w, n, k, absmax_scratch, out);
  }
  check(cudaGetLastError(), "pack_weight_kernel");
}

}  // namespace sharq::cuda
