// Tensor max, SharQ prepare and weight packing kernels (sm_90a). One thread per 32-element
// block of a row: it holds the block in registers, so mask, backbone quantization, residual and
// residual quantization are one pass over the activation after the tensor max (two launches).
// Codes and scales are bit-identical to the CPU reference (tests/cuda). Not the GEMM.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cuda/atomic>
#include <string>
#include <type_traits>

#include "codecs.cuh"
#include "device_info.cuh"
#include "gemm_planes.cuh"
#include "launch.cuh"
#include "sharq/cuda/kernels.h"
#include "sharq/cuda/prepare_rule.h"
#include "sharq/cuda/weight_layout.h"
#include "sharq/env_switch.h"
#include "sharq/error.h"
#include "stage_images.cuh"
#include "swiglu.cuh"
#include "tensor_max.cuh"

namespace sharq::cuda {
namespace {

constexpr int kThreads = 256;
static_assert(kThreads == prepare_rule::kThreads, "prepare_rule.h sizes this block");

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

__device__ __forceinline__ uint4 words16(const uint8_t* src) {
  uint4 u;
  u.x = src[0] | (src[1] << 8) | (src[2] << 16) | (static_cast<uint32_t>(src[3]) << 24);
  u.y = src[4] | (src[5] << 8) | (src[6] << 16) | (static_cast<uint32_t>(src[7]) << 24);
  u.z = src[8] | (src[9] << 8) | (src[10] << 16) | (static_cast<uint32_t>(src[11]) << 24);
  u.w = src[12] | (src[13] << 8) | (src[14] << 16) | (static_cast<uint32_t>(src[15]) << 24);
  return u;
}
__device__ __forceinline__ void store16(uint8_t* dst, const uint8_t* src) {
  *reinterpret_cast<uint4*>(dst) = words16(src);
}

// The backbone of 8 consecutive scaled values (a group of 8 never straddles a mask group): MODE 1
// keeps 2 of 4 pairs scored by max |.| (4:8p), MODE 2 keeps 2 of each 4 by |.| (2:4); the rest
// become 0.
template <int MODE>
__device__ __forceinline__ void backbone8(const float* v, float* xsp) {
  bool keep[4];
  if (MODE == 1) {
    keep_two_of_four(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3])),
                     fmaxf(fabsf(v[4]), fabsf(v[5])), fmaxf(fabsf(v[6]), fabsf(v[7])), keep);
#pragma unroll
    for (int i = 0; i < 8; ++i) xsp[i] = keep[i / 2] ? v[i] : 0.0f;
  } else {
#pragma unroll
    for (int g = 0; g < 8; g += 4) {
      keep_two_of_four(fabsf(v[g]), fabsf(v[g + 1]), fabsf(v[g + 2]), fabsf(v[g + 3]), keep);
#pragma unroll
      for (int i = 0; i < 4; ++i) xsp[g + i] = keep[i] ? v[g + i] : 0.0f;
    }
  }
}

// One 32-element block b (row-major chunk index) of the activation, already loaded into v and
// not yet scaled: scale by inv = rcp(s_t), mask, quantize both paths, write every output.
// MODE: 0 nvfp4, 1 sharq 4:8p, 2 sharq 2:4. Shared by every prepare schedule, so they cannot
// drift apart.
template <int MODE>
__device__ __forceinline__ void quantize_chunk(float* v, float inv, int64_t b,
                                               const Nvfp4View& sparse, const Nvfp4View& residual,
                                               float* decoded, const GemmPlanes& planes) {
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
#pragma unroll
    for (int g = 0; g < 32; g += 8) backbone8<MODE>(v + g, xsp + g);
    nvfp4_block<32>(xsp, codes, sparse.scales + b, dsp);
    store16(sparse.codes + b * 16, codes);
#pragma unroll
    for (int i = 0; i < 32; ++i) r[i] = __fsub_rn(v[i], dsp[i]);  // vs the *quantized* backbone
  }
  nvfp4_block<16>(r, codes, residual.scales + 2 * b, dr);
  nvfp4_block<16>(r + 16, codes + 8, residual.scales + 2 * b + 1, dr + 16);
  store16(residual.codes + b * 16, codes);
  if (planes.p) {
    bool lo = false;
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      if (MODE == 0) {
        store_plane8(planes, 0, b, u, dr + 8 * u);
      } else if (planes.lo_flags) {
        // The merged operand: for a decode product that skips lo, or the merged prefill.
        lo |= store_merged8(planes, b, u, dsp + 8 * u, dr + 8 * u);
      } else {
        store_plane8(planes, 0, b, u, dsp + 8 * u);
        store_plane8(planes, 1, b, u, dr + 8 * u);
      }
    }
    if (MODE != 0 && planes.lo_flags) planes.lo_flags[b] = lo;
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

// NVFP4 block of G scaled values spread over G / 8 lanes of 8 (a lane group aligned to G / 8
// lanes): the block max by shuffles, then nvfp4_block's exact steps on the lane's 8 values.
// Writes the lane's 4 code bytes into `codes` (a uint32) and returns the scale code.
template <int G>
__device__ __forceinline__ uint32_t nvfp4_block_part(const float* v, uint32_t* codes, float* deq) {
  float m = 0.0f;
#pragma unroll
  for (int i = 0; i < 8; ++i) m = fmaxf(m, fabsf(v[i]));
  // Only the 4-lane group is named: a warp's tail groups may have exited (whole groups do).
  const unsigned group = 0xFu << (threadIdx.x & 28u);
#pragma unroll
  for (int off = 1; off < G / 8; off <<= 1) m = fmaxf(m, __shfl_xor_sync(group, m, off));
  const uint32_t sc = nvfp4_scale_code(m);
  const float S = ue4m3_value(sc);
  const float r = scale_rcp(S);
  uint32_t c = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const float y = __fmul_rn(v[i], r);
    float e;
    c |= e2m1_nibble(e2m1_round(y, e), y, i);
    deq[i] = __fmul_rn(e, S);
  }
  *codes = c;
  return sc;
}

// 8 scaled-domain decodes -> four natural-order FP16 pairs (exact).
__device__ __forceinline__ uint4 natural_f16_8(const float* d) {
  uint32_t w[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const __half2 h = __floats2half2_rn(d[2 * j], d[2 * j + 1]);
    w[j] = *reinterpret_cast<const uint32_t*>(&h);
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

// quantize_chunk over four lanes: lane q (0..3) of 32-block b holds elements [8q, 8q + 8) in v,
// not yet scaled. The same operations on every element as quantize_chunk (so the same bits): the
// 2:4 and 4:8p groups lie inside one lane, the block maxima are shuffles. A quarter of the
// dependent chain per thread: the small (decode) prepares are latency-bound on it.
// With images.r not null (sharq-nvfp4-24 only), the lane also writes its 8-group into the 2:4
// prefill kernel's stage images (stage_images.cuh).
template <int MODE>
__device__ __forceinline__ void quantize_quarter(float* v, float inv, int64_t b, int q, int64_t k,
                                                 const Nvfp4View& sparse, const Nvfp4View& residual,
                                                 float* decoded, const GemmPlanes& planes,
                                                 const stage_images::Regions& images) {
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = __fmul_rn(v[i], inv);
  float dsp[8], r[8], dr[8];
  uint32_t codes, sp_codes = 0, sp_scale = 0;
  if (MODE == 0) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      dsp[i] = 0.0f;
      r[i] = v[i];
    }
  } else {
    float xsp[8];
    backbone8<MODE>(v, xsp);
    const uint32_t sc = nvfp4_block_part<32>(xsp, &codes, dsp);
    if (q == 0) sparse.scales[b] = static_cast<uint8_t>(sc);
    reinterpret_cast<uint32_t*>(sparse.codes + b * 16)[q] = codes;
    sp_codes = codes;
    sp_scale = sc;
#pragma unroll
    for (int i = 0; i < 8; ++i) r[i] = __fsub_rn(v[i], dsp[i]);  // vs the *quantized* backbone
  }
  const uint32_t sc = nvfp4_block_part<16>(r, &codes, dr);
  if ((q & 1) == 0) residual.scales[2 * b + q / 2] = static_cast<uint8_t>(sc);
  reinterpret_cast<uint32_t*>(residual.codes + b * 16)[q] = codes;
  if (planes.p) {
    if (MODE == 0) {
      store_plane8(planes, 0, b, q, dr);
    } else if (planes.lo_flags) {
      // The merged operand: for a decode product that skips lo, or the merged prefill.
      const bool lo = store_merged8(planes, b, q, dsp, dr);
      // The block's four lanes (nvfp4_block_part's group) vote.
      const unsigned group = 0xFu << (threadIdx.x & 28u);
      const bool any = (__ballot_sync(group, lo) & group) != 0u;
      if (q == 0) planes.lo_flags[b] = any;
    } else {
      store_plane8(planes, 0, b, q, dsp);
      store_plane8(planes, 1, b, q, dr);
    }
  }
  if (MODE == 2 && images.r)
    stage_images::write_group(images, k, b, q, natural_f16_8(dsp), natural_f16_8(dr), sp_codes,
                              sp_scale != 0);
  if (decoded) {
    float4* out = reinterpret_cast<float4*>(decoded + b * 32 + 8 * q);
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      out[i] = make_float4(
          __fadd_rn(dsp[4 * i], dr[4 * i]), __fadd_rn(dsp[4 * i + 1], dr[4 * i + 1]),
          __fadd_rn(dsp[4 * i + 2], dr[4 * i + 2]), __fadd_rn(dsp[4 * i + 3], dr[4 * i + 3]));
    }
  }
}

// 8 floats at p (16-byte aligned).
__device__ __forceinline__ void load8(const float* p, float* v) {
  const float4 a = reinterpret_cast<const float4*>(p)[0];
  const float4 c = reinterpret_cast<const float4*>(p)[1];
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
  v[4] = c.x, v[5] = c.y, v[6] = c.z, v[7] = c.w;
}

// x: (rows, k); one thread per 32-block.
template <int MODE>
__global__ void prepare_kernel(const float* __restrict__ x, int64_t rows, int64_t k,
                               const uint32_t* __restrict__ absmax, Nvfp4View sparse,
                               Nvfp4View residual, float* __restrict__ decoded, GemmPlanes planes) {
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
  quantize_chunk<MODE>(v, __frcp_rn(st), b, sparse, residual, decoded, planes);
}

// w: (n, k); one thread per 32-block; GROUP 16 or 32. Output in the GPU weight layout
// (weight_layout.h): a block's 16 code bytes and its scale(s) stay contiguous there.
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
  const int64_t c = weight_layout::code_offset(b / (k / 32), (b % (k / 32)) * 32, n, k);
  uint8_t* scale = out.scales + weight_layout::scale_of_code(c, GROUP);
  if (GROUP == 32) {
    nvfp4_block<32>(v, codes, scale, deq);
  } else {
    nvfp4_block<16>(v, codes, scale, deq);
    nvfp4_block<16>(v + 16, codes + 8, scale + 1, deq + 16);
  }
  uint4 u = words16(codes);  // each word in the stored bit order (weight_layout.h)
  u.x = weight_layout::stored_code_word(u.x);
  u.y = weight_layout::stored_code_word(u.y);
  u.z = weight_layout::stored_code_word(u.z);
  u.w = weight_layout::stored_code_word(u.w);
  *reinterpret_cast<uint4*>(out.codes + c) = u;
}

// ---- Fused schedules (prepare_fused, prepare_rmsnorm): scratch words in tensor_max.cuh ------

bool g_force_sequential_rms = false;

// Sum over the block in double (any order: prepare_rmsnorm certifies the result); valid in
// thread 0. Leaves `sm` reusable.
__device__ double block_sum(double v, double* sm) {
  return block_reduce(v, sm, 0.0, [](double x, double y) { return __dadd_rn(x, y); });
}

// Grid-wide barrier that also reduces the tensor max: every block arrives with its block max
// (thread 0's `block_max`), the last to arrive publishes s_t (scratch and both tensor-scale
// outputs), resets the counters for the next call and releases the others. Needs every block
// co-resident (cooperative launch). Returns s_t to every thread.
__device__ float grid_tensor_scale(uint32_t* scratch, float block_max_v, float* ts_sparse,
                                   float* ts_residual) {
  __shared__ float st_shared;
  if (threadIdx.x == 0) {
    AtomicU32 arrive(scratch[kArrive]), gen(scratch[kGeneration]), fin(scratch[kMaxFinal]);
    // gen cannot move before this block arrives, so a relaxed read is this call's generation.
    const uint32_t my_gen = gen.load(::cuda::memory_order_relaxed);
    atomicMax(scratch + kMaxAcc, __float_as_uint(block_max_v));
    if (arrive.fetch_add(1u, ::cuda::memory_order_acq_rel) == gridDim.x - 1) {
      AtomicU32 acc(scratch[kMaxAcc]);
      const uint32_t a = acc.load(::cuda::memory_order_relaxed);
      acc.store(0u, ::cuda::memory_order_relaxed);
      arrive.store(0u, ::cuda::memory_order_relaxed);
      fin.store(a, ::cuda::memory_order_relaxed);
      const float st = scale_of_max_bits(a);
      *ts_residual = st;
      if (ts_sparse) *ts_sparse = st;
      gen.fetch_add(1u, ::cuda::memory_order_release);
    } else {
      while (gen.load(::cuda::memory_order_acquire) == my_gen) {
      }
    }
    st_shared = scale_of_max_bits(fin.load(::cuda::memory_order_relaxed));
  }
  __syncthreads();
  return st_shared;
}

// Single launch: tensor max, grid barrier, decomposition. RESIDENT: one 32-block per thread,
// held in registers across the barrier (x read once); else grid-stride, x read twice.
template <int MODE, bool RESIDENT>
__global__ void __launch_bounds__(kThreads)
    prepare_single_kernel(const float* __restrict__ x, int64_t rows, int64_t k, uint32_t* scratch,
                          Nvfp4View sparse, Nvfp4View residual, float* __restrict__ decoded,
                          GemmPlanes planes) {
  __shared__ float red[32];
  const int64_t chunks = rows * (k / 32);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t b0 = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  float v[32];
  float m = 0.0f;
  if (RESIDENT) {
    if (b0 < chunks) {
      load32(x + b0 * 32, v);
#pragma unroll
      for (int i = 0; i < 32; ++i) m = fmaxf(m, fabsf(v[i]));
    }
  } else {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    const int64_t n4 = rows * k / 4;
#pragma unroll 4
    for (int64_t i = b0; i < n4; i += stride) {
      const float4 f = x4[i];
      m = fmaxf(m, fmaxf(fmaxf(fabsf(f.x), fabsf(f.y)), fmaxf(fabsf(f.z), fabsf(f.w))));
    }
  }
  m = block_max(m, red);
  const float st = grid_tensor_scale(scratch, m, MODE != 0 ? sparse.tensor_scale : nullptr,
                                     residual.tensor_scale);
  const float inv = __frcp_rn(st);
  if (RESIDENT) {
    if (b0 < chunks) quantize_chunk<MODE>(v, inv, b0, sparse, residual, decoded, planes);
  } else {
    for (int64_t b = b0; b < chunks; b += stride) {
      load32(x + b * 32, v);
      quantize_chunk<MODE>(v, inv, b, sparse, residual, decoded, planes);
    }
  }
}

// The inputs of the two-kernel schedule. A source gives the 4-wide absolute max of element
// group i (kernel 1) and a lane's 8 values (kernel 2): `load` runs before the dependency wait
// (only data written before the previous kernel started may be read there), `finish` after it.
struct PlainSource {  // x itself
  const float* x;
  __device__ __forceinline__ float abs_max4(int64_t i) const {
    const float4 f = reinterpret_cast<const float4*>(x)[i];
    return fmaxf(fmaxf(fabsf(f.x), fabsf(f.y)), fmaxf(fabsf(f.z), fabsf(f.w)));
  }
  __device__ __forceinline__ void load(int64_t b, int q, float (&v)[8], float (&)[8]) const {
    load8(x + b * 32 + 8 * q, v);
  }
  __device__ __forceinline__ void finish(float (&)[8], const float (&)[8], const uint32_t*, int64_t,
                                         int) const {}
};

// x itself, read only after the dependency wait: x's producer may still be writing it when this
// pass starts (prepare_pass, launched right after the producer).
struct LateSource {
  const float* x;
  __device__ __forceinline__ void load(int64_t, int, float (&)[8], float (&)[8]) const {}
  __device__ __forceinline__ void finish(float (&v)[8], const float (&)[8], const uint32_t*,
                                         int64_t b, int q) const {
    load8(x + b * 32 + 8 * q, v);
  }
};

// swiglu1 (swiglu.cuh) as engine_ops' swiglu_kernel computes it: the SwiGLU source gives the
// same bits as swiglu then the plain source.
struct SwigluSource {  // silu(gate) * up, never stored (down_proj's input)
  const float* gate;
  const float* up;
  __device__ __forceinline__ float abs_max4(int64_t i) const {
    const float4 g = reinterpret_cast<const float4*>(gate)[i];
    const float4 u = reinterpret_cast<const float4*>(up)[i];
    return fmaxf(fmaxf(fabsf(swiglu1(g.x, u.x)), fabsf(swiglu1(g.y, u.y))),
                 fmaxf(fabsf(swiglu1(g.z, u.z)), fabsf(swiglu1(g.w, u.w))));
  }
  __device__ __forceinline__ void load(int64_t b, int q, float (&v)[8], float (&u)[8]) const {
    load8(gate + b * 32 + 8 * q, v);
    load8(up + b * 32 + 8 * q, u);
  }
  __device__ __forceinline__ void finish(float (&v)[8], const float (&u)[8], const uint32_t*,
                                         int64_t, int) const {
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = swiglu1(v[i], u[i]);
  }
};

static_assert(prepare_scratch_bytes(0) == 4 * kRowInv, "kernels.h's scratch size, tensor_max.cuh");

// Two-kernel schedule, kernel 1: tensor max, left for the pass (publish_tensor_max: each block's
// in a slot, or the last block's atomically), so no memset launch precedes it.
template <typename Src>
__global__ void __launch_bounds__(kThreads)
    max_publish_kernel(Src src, int64_t n, uint32_t* scratch, float* ts_sparse,
                       float* ts_residual) {
  // Waits for the kernel before it (a no-op unless launched as its programmatic dependent), then
  // lets a programmatic-dependent pass start its loads; the pass waits for our completion
  // (griddepcontrol.wait) before it reads the max.
  pdl_entry();
  __shared__ float red[32];
  const int64_t n4 = n / 4;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  float m = 0.0f;
#pragma unroll 4
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n4;
       i += stride) {
    m = fmaxf(m, src.abs_max4(i));
  }
  publish_tensor_max(scratch, block_max(m, red), ts_sparse, ts_residual);
}

// Two-kernel schedule, kernel 2 (also after the RMSNorm kernel 1): four lanes per 32-block
// (quantize_quarter); the lane's loads are issued before the dependency wait, so under
// programmatic dependent launch they overlap kernel 1 (without it the wait is a no-op).
template <int MODE, typename Src>
__global__ void __launch_bounds__(kThreads)
    pass_kernel(Src src, int64_t rows, int64_t k, uint32_t* scratch, Nvfp4View sparse,
                Nvfp4View residual, float* __restrict__ decoded, GemmPlanes planes,
                stage_images::Regions images) {
  // The GEMM that reads our output may launch now and stream its weights (it waits for our
  // completion before it reads the activation).
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t b = e / 4;
  const int q = static_cast<int>(e % 4);
  // Whole lane groups of 4 are active or not together (the block size is a multiple of 4), so the
  // shuffles in quantize_quarter see only active lanes.
  const bool active = b < rows * (k / 32);
  float v[8], aux[8];
  if (active) src.load(b, q, v, aux);
  asm volatile("griddepcontrol.wait;" ::: "memory");
  // The published max through warp 0 only: every warp of a prefill-sized pass reading the same
  // few words made those L2 lines a hot spot (session 28, bench_prepare 2048 x 4096: 36 -> 55 us).
  __shared__ uint32_t max_shared;
  PublishedMax pm;
  if (threadIdx.x < 32) pm = load_published(scratch);
  if (active) src.finish(v, aux, scratch, b, q);  // its loads join ours
  if (threadIdx.x < 32) {
    const uint32_t m = reduce_published(pm);
    if (threadIdx.x == 0) max_shared = m;
  }
  __syncthreads();  // before the return of inactive lanes
  const uint32_t max_bits = max_shared;
  const float st = scale_of_max_bits(max_bits);
  if (blockIdx.x == 0 && threadIdx.x == 0)  // the GEMM after us reads the tensor scales
    store_tensor_scales(scratch, max_bits, MODE != 0 ? sparse.tensor_scale : nullptr,
                        residual.tensor_scale);
  if (!active) return;
  quantize_quarter<MODE>(v, __frcp_rn(st), b, q, k, sparse, residual, decoded, planes, images);
}

// 1 / sqrt(ss / d + eps) rounded to float, in the CPU reference's exact operation sequence
// (src/cpu/ops.cpp rms_norm). Every step is a correctly rounded monotone operation, so the
// result is monotone (non-increasing) in ss.
__device__ __forceinline__ float rms_inv(double ss, int64_t d, float eps) {
  const double mean = __dadd_rn(__ddiv_rn(ss, static_cast<double>(d)), static_cast<double>(eps));
  return __double2float_rn(__ddiv_rn(1.0, __dsqrt_rn(mean)));
}

// ss + f.x^2 + f.y^2 + f.z^2 + f.w^2 in double, in that order, each step correctly rounded.
__device__ __forceinline__ double add_squares4(double ss, float4 f) {
  ss = __dadd_rn(ss, __dmul_rn(f.x, f.x));
  ss = __dadd_rn(ss, __dmul_rn(f.y, f.y));
  ss = __dadd_rn(ss, __dmul_rn(f.z, f.z));
  return __dadd_rn(ss, __dmul_rn(f.w, f.w));
}

// h = (x * inv) * w elementwise, the CPU's two roundings; and max |h| folded into m.
__device__ __forceinline__ float4 norm4(float4 f, float inv, float4 g, float& m) {
  const float4 h =
      make_float4(__fmul_rn(__fmul_rn(f.x, inv), g.x), __fmul_rn(__fmul_rn(f.y, inv), g.y),
                  __fmul_rn(__fmul_rn(f.z, inv), g.z), __fmul_rn(__fmul_rn(f.w, inv), g.w));
  m = fmaxf(m, fmaxf(fmaxf(fabsf(h.x), fabsf(h.y)), fmaxf(fabsf(h.z), fabsf(h.w))));
  return h;
}

// inv of a row from its parallel sum of squares ss (valid in lane 0), certified equal to the
// CPU's (below); xs the row, for the sequential fallback. Called by a whole warp: lanes 0 and 1
// take the two bounds at once (their double divisions and square roots are most of this
// chain). Valid in lane 0.
__device__ float certified_rms_inv(double ss, const float* xs, int64_t k, float eps,
                                   bool force_sequential) {
  const unsigned lane = threadIdx.x & 31u;
  ss = __shfl_sync(0xffffffffu, ss, 0);
  const double d = __dmul_rn(__dmul_rn(ss, static_cast<double>(k)), 0x1p-50);
  const float bound = rms_inv(lane == 0 ? __dsub_rn(ss, d) : __dadd_rn(ss, d), k, eps);
  const float upper = __shfl_sync(0xffffffffu, bound, 1);
  if (lane != 0 || (!force_sequential && bound == upper)) return bound;
  double seq = 0.0;
  for (int64_t j = 0; j < k; ++j) seq = __dadd_rn(seq, __dmul_rn(xs[j], xs[j]));
  return rms_inv(seq, k, eps);
}

// RMSNorm, phase 1, shared by both RMSNorm schedules: rows blockIdx.x, +gridDim.x, ...; for
// each, the sum of squares in double, the row's rcp(rms) into scratch (and h into `normed`);
// returns this thread's max |h| with h = (x * inv) * w.
//
// Bit-exactness of inv: the CPU adds x_j^2 in double strictly left to right; a parallel sum
// rounds differently. Both lie within n * 2^-53 * ss (relative) of the exact sum (terms are
// non-negative, products exact in double), so the sequential sum lies in [ss - D, ss + D] with
// D = ss * n * 2^-50 (4x margin). rms_inv is monotone in ss: when both ends give the same
// float, so does the sequential sum. Otherwise (about 1 row in 10^4) thread 0 redoes the
// sequential sum.
__device__ float rmsnorm_rows(const float* __restrict__ x, const float* __restrict__ w, float eps,
                              int64_t rows, int64_t k, uint32_t* scratch,
                              float* __restrict__ normed, bool force_sequential) {
  __shared__ double redd[32];
  __shared__ float inv_shared;
  float* row_inv = reinterpret_cast<float*>(scratch + kRowInv);
  const int64_t k4 = k / 4;
  const float4* w4 = reinterpret_cast<const float4*>(w);
  float m = 0.0f;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float4* xr = reinterpret_cast<const float4*>(x + row * k);
    double ss = 0.0;
#pragma unroll 4
    for (int64_t i = threadIdx.x; i < k4; i += blockDim.x) ss = add_squares4(ss, xr[i]);
    ss = block_sum(ss, redd);
    if (threadIdx.x < 32) {
      const float inv = certified_rms_inv(ss, x + row * k, k, eps, force_sequential);
      if (threadIdx.x == 0) {
        inv_shared = inv;
        row_inv[row] = inv;
      }
    }
    __syncthreads();
    const float inv = inv_shared;
    float4* hr = normed ? reinterpret_cast<float4*>(normed + row * k) : nullptr;
#pragma unroll 4
    for (int64_t i = threadIdx.x; i < k4; i += blockDim.x) {
      const float4 h = norm4(xr[i], inv, w4[i], m);
      if (hr) hr[i] = h;
    }
    __syncthreads();  // inv_shared is rewritten by the next row
  }
  return m;
}

// RMSNorm, phase 2: h = (x * inv_row) * w for N values of 32-block b (the same two roundings as
// phase 1), x in v and w in wv. inv_row was written by other blocks (before the barrier or by the
// previous kernel): read through L2.
template <int N>
__device__ __forceinline__ void apply_row_norm(float* v, const float* wv, const uint32_t* scratch,
                                               int64_t b, int64_t per_row) {
  const float ri = __ldcg(reinterpret_cast<const float*>(scratch + kRowInv) + b / per_row);
#pragma unroll
  for (int i = 0; i < N; ++i) v[i] = __fmul_rn(__fmul_rn(v[i], ri), wv[i]);
}

// The whole 32-block b: x already in v, w loaded here.
__device__ __forceinline__ void load_normed_chunk(const float* __restrict__ w,
                                                  const uint32_t* scratch, int64_t b,
                                                  int64_t per_row, float* v) {
  float wv[32];
  load32(w + (b % per_row) * 32, wv);
  apply_row_norm<32>(v, wv, scratch, b, per_row);
}

// Single launch RMSNorm + prepare: phase 1 (a row per block), grid barrier with the tensor max,
// phase 2 (a 32-block per thread, grid-stride).
template <int MODE>
__global__ void __launch_bounds__(kThreads)
    prepare_rmsnorm_kernel(const float* __restrict__ x, const float* __restrict__ w, float eps,
                           int64_t rows, int64_t k, uint32_t* scratch, Nvfp4View sparse,
                           Nvfp4View residual, float* __restrict__ normed,
                           float* __restrict__ decoded, GemmPlanes planes, bool force_sequential) {
  __shared__ float red[32];
  const float m = rmsnorm_rows(x, w, eps, rows, k, scratch, normed, force_sequential);
  const float st = grid_tensor_scale(
      scratch, block_max(m, red), MODE != 0 ? sparse.tensor_scale : nullptr, residual.tensor_scale);
  const float inv_st = __frcp_rn(st);
  const int64_t per_row = k / 32;
  const int64_t chunks = rows * per_row;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; b < chunks;
       b += stride) {
    float v[32];
    load32(x + b * 32, v);
    load_normed_chunk(w, scratch, b, per_row, v);
    quantize_chunk<MODE>(v, inv_st, b, sparse, residual, decoded, planes);
  }
}

// Two-kernel RMSNorm, kernel 1: phase 1 and the published tensor max (as max_publish_kernel).
__global__ void __launch_bounds__(kThreads)
    rmsnorm_publish_kernel(const float* __restrict__ x, const float* __restrict__ w, float eps,
                           int64_t rows, int64_t k, uint32_t* scratch, float* ts_sparse,
                           float* ts_residual, float* __restrict__ normed, bool force_sequential) {
  pdl_entry();  // as max_publish_kernel
  __shared__ float red[32];
  const float m = rmsnorm_rows(x, w, eps, rows, k, scratch, normed, force_sequential);
  publish_tensor_max(scratch, block_max(m, red), ts_sparse, ts_residual);
}

// Kernel 1 at decode sizes (a row per block, each thread at most PER float4 of it): the same
// sums, inv and max as rmsnorm_publish_kernel (same per-thread order, same block reductions), with
// x read once, kept in registers. The constant norm weight's loads are written before the
// dependency wait, but ptxas issues them after it, beside x's (SASS, session 27:
// dev/cuda/check_prewait_loads.sh); w is needed only after the sum, so that costs no round trip.
template <int PER>
__global__ void __launch_bounds__(kThreads)
    rmsnorm_publish_row_kernel(const float* __restrict__ x, const float* __restrict__ w, float eps,
                               int64_t k, uint32_t* scratch, float* ts_sparse, float* ts_residual,
                               float* __restrict__ normed, bool force_sequential) {
  __shared__ double redd[32];
  __shared__ float red[32];
  __shared__ float inv_shared;
  const int64_t row = blockIdx.x, k4 = k / 4;
  const float4* w4 = reinterpret_cast<const float4*>(w);
  const float4* xr = reinterpret_cast<const float4*>(x + row * k);
  float4 wv[PER], xv[PER];
#pragma unroll
  for (int j = 0; j < PER; ++j) {
    const int64_t i = threadIdx.x + j * kThreads;
    if (i < k4) wv[j] = w4[i];
  }
  pdl_entry();
  double ss = 0.0;
#pragma unroll
  for (int j = 0; j < PER; ++j) {
    const int64_t i = threadIdx.x + j * kThreads;
    if (i >= k4) break;
    xv[j] = xr[i];
    ss = add_squares4(ss, xv[j]);
  }
  ss = block_sum(ss, redd);
  if (threadIdx.x < 32) {
    const float inv = certified_rms_inv(ss, x + row * k, k, eps, force_sequential);
    if (threadIdx.x == 0) {
      inv_shared = inv;
      reinterpret_cast<float*>(scratch + kRowInv)[row] = inv;
    }
  }
  __syncthreads();
  const float inv = inv_shared;
  float m = 0.0f;
#pragma unroll
  for (int j = 0; j < PER; ++j) {
    const int64_t i = threadIdx.x + j * kThreads;
    if (i >= k4) break;
    const float4 h = norm4(xv[j], inv, wv[j], m);
    if (normed) reinterpret_cast<float4*>(normed + row * k)[i] = h;
  }
  publish_tensor_max(scratch, block_max(m, red), ts_sparse, ts_residual);
}

// Decode sizes (up to 4 rows whose float4s fit a thread group's registers:
// prepare_rule::self_depth): RMSNorm and the pass in one kernel. Every block takes the statistics
// of all rows itself (a 4096-wide row is 16 KB from L2), so no block waits for another: no
// statistics kernel, no published max and no kernel boundary sit on the decode chain. Then each
// lane quantizes its 8 values as pass_kernel does. Same sums (certified), inv, max and codes as the
// two-kernel schedule.
//
// For the statistics the block splits into groups of `size` threads (kThreads /
// prepare_rule::self_groups(rows)), one a row, each thread holding at most PER float4 of its row
// in registers, all loaded at once (sizes: include/sharq/cuda/prepare_rule.h).
template <int MODE, int PER>
__global__ void __launch_bounds__(kThreads)
    rmsnorm_pass_self_kernel(const float* __restrict__ x, const float* __restrict__ w, float eps,
                             int64_t rows, int64_t k, uint32_t* scratch, Nvfp4View sparse,
                             Nvfp4View residual, float* __restrict__ normed,
                             float* __restrict__ decoded, GemmPlanes planes,
                             stage_images::Regions images, int size, bool force_sequential) {
  __shared__ double part[kThreads / 32];
  __shared__ float inv_shared[4];
  __shared__ float red[32];
  __shared__ float st_shared;
  const int k4 = static_cast<int>(k / 4), per_row = static_cast<int>(k / 32);
  const int e = static_cast<int>(blockIdx.x) * kThreads + static_cast<int>(threadIdx.x);
  const int b = e / 4, q = e % 4;
  const bool active = b < rows * per_row;  // whole lane groups of 4 (see pass_kernel)
  // Statistics role: group g (row g) of `size` threads; this thread's float4s t + size * j.
  const int g = static_cast<int>(threadIdx.x) / size, t = static_cast<int>(threadIdx.x) % size;
  const bool has_row = g < rows;
  const float4* xr = reinterpret_cast<const float4*>(x) + static_cast<int64_t>(g) * k4;
  const float4* w4 = reinterpret_cast<const float4*>(w);
  float wv[8], v[8];
  float4 ws[PER], xs[PER];
  if (active) load8(w + (b % per_row) * 32 + 8 * q, wv);  // constant: before the wait
#pragma unroll
  for (int j = 0; j < PER; ++j)
    if (has_row && t + size * j < k4) ws[j] = w4[t + size * j];
  pdl_entry();
  if (active) load8(x + static_cast<int64_t>(b) * 32 + 8 * q, v);
#pragma unroll
  for (int j = 0; j < PER; ++j)
    if (has_row && t + size * j < k4) xs[j] = xr[t + size * j];
  double ss = 0.0;
#pragma unroll
  for (int j = 0; j < PER; ++j)
    if (has_row && t + size * j < k4) ss = add_squares4(ss, xs[j]);
  const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x / 32u;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss = __dadd_rn(ss, __shfl_xor_sync(0xffffffffu, ss, o));
  if (lane == 0) part[warp] = ss;
  __syncthreads();
  const unsigned warps = static_cast<unsigned>(size) / 32u;  // a row's warps: 8, 4 or 2
  if (warp < rows) {  // warp r: row r's sum and certified inv
    double s = lane < warps ? part[warp * warps + lane] : 0.0;
#pragma unroll
    for (int o = 4; o > 0; o >>= 1) s = __dadd_rn(s, __shfl_xor_sync(0xffffffffu, s, o));
    const float inv = certified_rms_inv(s, x + warp * k, k, eps, force_sequential);
    if (lane == 0) inv_shared[warp] = inv;
  }
  __syncthreads();
  float m = 0.0f;
  if (has_row) {
    const float inv = inv_shared[g];
#pragma unroll
    for (int j = 0; j < PER; ++j)
      if (t + size * j < k4) norm4(xs[j], inv, ws[j], m);
  }
  m = block_max(m, red);
  if (threadIdx.x == 0) {
    const uint32_t bits = __float_as_uint(m);
    st_shared = scale_of_max_bits(bits);
    if (blockIdx.x == 0)  // as pass_kernel: the GEMM after us reads the tensor scales
      store_tensor_scales(scratch, bits, MODE != 0 ? sparse.tensor_scale : nullptr,
                          residual.tensor_scale);
  }
  __syncthreads();
  if (!active) return;
  const float inv = inv_shared[b / per_row];
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = __fmul_rn(__fmul_rn(v[i], inv), wv[i]);
  if (normed) {
    float4* out = reinterpret_cast<float4*>(normed + static_cast<int64_t>(b) * 32 + 8 * q);
    out[0] = make_float4(v[0], v[1], v[2], v[3]);
    out[1] = make_float4(v[4], v[5], v[6], v[7]);
  }
  quantize_quarter<MODE>(v, __frcp_rn(st_shared), b, q, k, sparse, residual, decoded, planes,
                         images);
}

// Two-kernel RMSNorm, kernel 2: pass_kernel on the normed rows; x and w load before the
// dependency wait (programmatic dependent launch overlaps them with kernel 1).
struct NormSource {
  const float* x;
  const float* w;
  int64_t per_row;  // 32-blocks per row
  __device__ __forceinline__ void load(int64_t b, int q, float (&v)[8], float (&wv)[8]) const {
    load8(x + b * 32 + 8 * q, v);
    load8(w + (b % per_row) * 32 + 8 * q, wv);
  }
  __device__ __forceinline__ void finish(float (&v)[8], const float (&wv)[8],
                                         const uint32_t* scratch, int64_t b, int) const {
    apply_row_norm<8>(v, wv, scratch, b, per_row);
  }
};

// Blocks of `Kernel` (kThreads each) that fit on the device at once: the cooperative grid cap.
template <auto Kernel>
int coresident_blocks() {
  return std::max(1, resident_blocks<Kernel, kThreads>());
}

template <typename... KArgs, typename... Args>
void launch_ex(void (*kernel)(KArgs...), unsigned grid, cudaStream_t stream,
               cudaLaunchAttributeID attr_id, const char* what, Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(kThreads);
  cfg.stream = stream;
  cudaLaunchAttribute attr = {};
  attr.id = attr_id;
  if (attr_id == cudaLaunchAttributeCooperative) attr.val.cooperative = 1;
  if (attr_id == cudaLaunchAttributeProgrammaticStreamSerialization)
    attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = attr_id == cudaLaunchAttributeIgnore ? 0 : 1;
  check(cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...), what);
}

// The publish kernels join the decode step's chain of programmatic dependents (launch.cuh).
cudaLaunchAttributeID chain_attr() {
  return pdl_enabled() ? cudaLaunchAttributeProgrammaticStreamSerialization
                       : cudaLaunchAttributeIgnore;
}

// Calls f(std::integral_constant<int, MODE>) for the kernels' MODE number.
template <typename F>
void with_mode(PrepareMode mode, F&& f) {
  switch (mode) {
    case PrepareMode::kNvfp4:
      f(std::integral_constant<int, 0>{});
      break;
    case PrepareMode::kSharqNvfp4:
      f(std::integral_constant<int, 1>{});
      break;
    case PrepareMode::kSharqNvfp4_24:
      f(std::integral_constant<int, 2>{});
      break;
  }
}

// bench_prepare on H100 (graph replay): two kernels with PDL are the fastest or within 1 us up
// to ~1M elements; past that the single launch's co-resident grid (2 blocks/SM at ~120
// registers) leaves the memory system underused and plain two kernels win (2048 x 14336:
// 170 us vs 199 us single launch).
PrepareSchedule auto_schedule(int64_t elements) {
  return elements <= (int64_t{1} << 20) ? PrepareSchedule::kTwoKernelPdl
                                        : PrepareSchedule::kTwoKernel;
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

void prepare(PrepareMode mode, const float* x, int64_t rows, int64_t k, Nvfp4View sparse,
             Nvfp4View residual, float* decoded, uint32_t* absmax_scratch, cudaStream_t stream,
             uint16_t* gemm_f16, PlaneOrder order, uint8_t* lo_flags) {
  check_shape(rows, k, "cuda::prepare");
  const GemmPlanes gh = gemm_planes(gemm_f16, rows, k, order, "prepare", lo_flags);
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

// pass_kernel's grid: four lanes per 32-element block.
unsigned pass_blocks(int64_t rows, int64_t k) {
  return static_cast<unsigned>(
      std::max<int64_t>((4 * rows * (k / 32) + kThreads - 1) / kThreads, 1));
}

// The two-kernel schedule on a source: max_publish_kernel, then pass_kernel (its programmatic
// dependent under kTwoKernelPdl).
template <int M, typename Src>
void launch_two_kernel(Src src, int64_t rows, int64_t k, Nvfp4View sparse, Nvfp4View residual,
                       uint32_t* scratch, cudaStream_t stream, const GemmPlanes& gh, float* decoded,
                       PrepareSchedule schedule, stage_images::Regions images) {
  const int64_t n = rows * k;
  const unsigned max_grid = static_cast<unsigned>(std::clamp<int64_t>(
      (n / 4 + kThreads - 1) / kThreads, 1, coresident_blocks<max_publish_kernel<Src>>()));
  launch_ex(max_publish_kernel<Src>, max_grid, stream, chain_attr(), "max_publish_kernel", src, n,
            scratch, M != 0 ? sparse.tensor_scale : nullptr, residual.tensor_scale);
  launch_ex(pass_kernel<M, Src>, pass_blocks(rows, k), stream,
            schedule == PrepareSchedule::kTwoKernelPdl
                ? cudaLaunchAttributeProgrammaticStreamSerialization
                : cudaLaunchAttributeIgnore,
            "pass_kernel", src, rows, k, scratch, sparse, residual, decoded, gh, images);
}

// The stage images a prepare writes besides its other outputs (none when ws_images is null):
// checked, the last tile's padding rows cleared first.
stage_images::Regions images_for(const char* who, PrepareMode mode, uint8_t* ws_images,
                                 int64_t rows, int64_t k, PrepareSchedule schedule,
                                 cudaStream_t stream) {
  if (!ws_images) return {nullptr, nullptr, nullptr, {0, 0}};
  const std::string w = std::string("cuda::") + who;
  if (mode != PrepareMode::kSharqNvfp4_24)
    throw Error(w + ": stage images are the sharq-nvfp4-24 prefill kernel's");
  if (schedule == PrepareSchedule::kSingleLaunch)
    throw Error(w + ": stage images come from the two-kernel schedules only");
  if (rows < 1) throw Error(w + ": stage images need at least one row");
  if (reinterpret_cast<uintptr_t>(ws_images) & 15)
    throw Error(w + ": stage images not 16-byte aligned");
  check(stage_images::clear_padding(ws_images, rows, k, stream), who);
  return stage_images::regions(ws_images, rows, k);
}

void prepare_fused(PrepareMode mode, const float* x, int64_t rows, int64_t k, Nvfp4View sparse,
                   Nvfp4View residual, uint32_t* scratch, cudaStream_t stream, uint16_t* gemm_f16,
                   float* decoded, PrepareSchedule schedule, uint8_t* ws_images, PlaneOrder order,
                   uint8_t* lo_flags) {
  check_shape(rows, k, "cuda::prepare_fused");
  const GemmPlanes gh = gemm_planes(gemm_f16, rows, k, order, "prepare_fused", lo_flags);
  const int64_t chunks = rows * (k / 32);
  const int64_t need = std::max<int64_t>((chunks + kThreads - 1) / kThreads, 1);
  if (schedule == PrepareSchedule::kAuto) schedule = auto_schedule(rows * k);
  const auto images = images_for("prepare_fused", mode, ws_images, rows, k, schedule, stream);
  with_mode(mode, [&](auto m) {
    constexpr int M = decltype(m)::value;
    if (schedule == PrepareSchedule::kSingleLaunch) {
      constexpr auto resident = prepare_single_kernel<M, true>;
      constexpr auto streaming = prepare_single_kernel<M, false>;
      if (need <= coresident_blocks<resident>()) {
        launch_ex(resident, static_cast<unsigned>(need), stream, cudaLaunchAttributeCooperative,
                  "prepare_single_kernel", x, rows, k, scratch, sparse, residual, decoded, gh);
      } else {
        launch_ex(streaming, static_cast<unsigned>(coresident_blocks<streaming>()), stream,
                  cudaLaunchAttributeCooperative, "prepare_single_kernel", x, rows, k, scratch,
                  sparse, residual, decoded, gh);
      }
      return;
    }
    launch_two_kernel<M>(PlainSource{x}, rows, k, sparse, residual, scratch, stream, gh, decoded,
                         schedule, images);
  });
}

void prepare_pass(PrepareMode mode, const float* x, int64_t rows, int64_t k, Nvfp4View sparse,
                  Nvfp4View residual, uint32_t* scratch, cudaStream_t stream, uint16_t* gemm_f16,
                  uint8_t* ws_images, PlaneOrder order, uint8_t* lo_flags) {
  check_shape(rows, k, "cuda::prepare_pass");
  const GemmPlanes gh = gemm_planes(gemm_f16, rows, k, order, "prepare_pass", lo_flags);
  const auto images =
      images_for("prepare_pass", mode, ws_images, rows, k, PrepareSchedule::kTwoKernel, stream);
  with_mode(mode, [&](auto m) {
    launch_ex(pass_kernel<decltype(m)::value, LateSource>, pass_blocks(rows, k), stream,
              chain_attr(), "pass_kernel", LateSource{x}, rows, k, scratch, sparse, residual,
              static_cast<float*>(nullptr), gh, images);
  });
}

void prepare_swiglu(PrepareMode mode, const float* gate, const float* up, int64_t rows, int64_t k,
                    Nvfp4View sparse, Nvfp4View residual, uint32_t* scratch, cudaStream_t stream,
                    uint16_t* gemm_f16, float* decoded, uint8_t* ws_images, PlaneOrder order,
                    uint8_t* lo_flags) {
  check_shape(rows, k, "cuda::prepare_swiglu");
  const GemmPlanes gh = gemm_planes(gemm_f16, rows, k, order, "prepare_swiglu", lo_flags);
  if ((reinterpret_cast<uintptr_t>(gate) & 15) || (reinterpret_cast<uintptr_t>(up) & 15))
    throw Error("cuda::prepare_swiglu: gate and up must be 16-byte aligned");
  const PrepareSchedule schedule = auto_schedule(rows * k);
  const auto images = images_for("prepare_swiglu", mode, ws_images, rows, k, schedule, stream);
  with_mode(mode, [&](auto m) {
    launch_two_kernel<decltype(m)::value>(SwigluSource{gate, up}, rows, k, sparse, residual,
                                          scratch, stream, gh, decoded, schedule, images);
  });
}

namespace {
// rmsnorm_pass_self_kernel's register depth where it applies (prepare_rule::self_depth), else 0.
// SHARQ_CUDA_RMS_SELF=0 turns it off (A/B).
int rmsnorm_self_depth(int64_t rows, int64_t k) {
  static const bool on = switched_on("SHARQ_CUDA_RMS_SELF");
  return on ? prepare_rule::self_depth(rows, k) : 0;
}

// rmsnorm_publish_row_kernel where it applies (prepare_rule::rows_depth), else false.
// SHARQ_CUDA_RMS_ROWS=0 turns it off (A/B).
bool launch_rmsnorm_publish_rows(const float* x, const float* w, float eps, int64_t rows, int64_t k,
                                 uint32_t* scratch, float* ts_sparse, float* ts_residual,
                                 float* normed, cudaStream_t stream) {
  static const bool on = switched_on("SHARQ_CUDA_RMS_ROWS");
  const int depth = prepare_rule::rows_depth(rows, k);
  if (!on || depth == 0) return false;
  const auto go = [&](auto kernel) {
    launch_ex(kernel, static_cast<unsigned>(rows), stream, chain_attr(),
              "rmsnorm_publish_row_kernel", x, w, eps, k, scratch, ts_sparse, ts_residual, normed,
              g_force_sequential_rms);
    return true;
  };
  if (depth == 1) return go(rmsnorm_publish_row_kernel<1>);
  if (depth == 2) return go(rmsnorm_publish_row_kernel<2>);
  if (depth == 4) return go(rmsnorm_publish_row_kernel<4>);
  return go(rmsnorm_publish_row_kernel<prepare_rule::kRowsMaxPer>);
}
}  // namespace

void prepare_rmsnorm(PrepareMode mode, const float* x, const float* norm_w, float eps, int64_t rows,
                     int64_t k, Nvfp4View sparse, Nvfp4View residual, uint32_t* scratch,
                     cudaStream_t stream, uint16_t* gemm_f16, float* normed_out, float* decoded,
                     PrepareSchedule schedule, uint8_t* ws_images, PlaneOrder order,
                     uint8_t* lo_flags) {
  check_shape(rows, k, "cuda::prepare_rmsnorm");
  const GemmPlanes gh = gemm_planes(gemm_f16, rows, k, order, "prepare_rmsnorm", lo_flags);
  const int64_t chunks = rows * (k / 32);
  const int64_t need = std::max<int64_t>((chunks + kThreads - 1) / kThreads, 1);
  if (schedule == PrepareSchedule::kAuto) schedule = auto_schedule(rows * k);
  const auto images = images_for("prepare_rmsnorm", mode, ws_images, rows, k, schedule, stream);
  with_mode(mode, [&](auto m) {
    constexpr int M = decltype(m)::value;
    if (schedule == PrepareSchedule::kSingleLaunch) {
      constexpr auto kernel = prepare_rmsnorm_kernel<M>;
      const auto grid = static_cast<unsigned>(
          std::min<int64_t>(std::max(need, rows), coresident_blocks<kernel>()));
      launch_ex(kernel, grid, stream, cudaLaunchAttributeCooperative, "prepare_rmsnorm_kernel", x,
                norm_w, eps, rows, k, scratch, sparse, residual, normed_out, decoded, gh,
                g_force_sequential_rms);
      return;
    }
    const int self_depth =
        schedule == PrepareSchedule::kTwoKernelPdl ? rmsnorm_self_depth(rows, k) : 0;
    if (self_depth != 0) {
      const auto go = [&](auto kernel) {
        launch_ex(kernel, pass_blocks(rows, k), stream, chain_attr(), "rmsnorm_pass_self_kernel", x,
                  norm_w, eps, rows, k, scratch, sparse, residual, normed_out, decoded, gh, images,
                  kThreads / prepare_rule::self_groups(rows), g_force_sequential_rms);
      };
      if (self_depth == 4) return go(rmsnorm_pass_self_kernel<M, 4>);
      if (self_depth == 8) return go(rmsnorm_pass_self_kernel<M, 8>);
      return go(rmsnorm_pass_self_kernel<M, prepare_rule::kSelfMaxPer>);
    }
    // A row per block; past ~8 resident blocks per SM more blocks only queue.
    const auto stats_grid = static_cast<unsigned>(std::clamp<int64_t>(
        rows, 1, 8 * static_cast<int64_t>(coresident_blocks<rmsnorm_publish_kernel>())));
    float* ts_sparse = M != 0 ? sparse.tensor_scale : nullptr;
    if (!launch_rmsnorm_publish_rows(x, norm_w, eps, rows, k, scratch, ts_sparse,
                                     residual.tensor_scale, normed_out, stream)) {
      launch_ex(rmsnorm_publish_kernel, stats_grid, stream, chain_attr(), "rmsnorm_publish_kernel",
                x, norm_w, eps, rows, k, scratch, ts_sparse, residual.tensor_scale, normed_out,
                g_force_sequential_rms);
    }
    launch_ex(pass_kernel<M, NormSource>, pass_blocks(rows, k), stream,
              schedule == PrepareSchedule::kTwoKernelPdl
                  ? cudaLaunchAttributeProgrammaticStreamSerialization
                  : cudaLaunchAttributeIgnore,
              "pass_kernel", NormSource{x, norm_w, k / 32}, rows, k, scratch, sparse, residual,
              decoded, gh, images);
  });
}

namespace testing {
void force_sequential_rms(bool on) {
  g_force_sequential_rms = on;
}
}  // namespace testing

}  // namespace sharq::cuda
