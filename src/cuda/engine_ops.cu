// Elementwise and row-wise decoder ops of the CUDA backend (embedding, RMSNorm, RoPE, KV store,
// SwiGLU, adds, bf16 rounding), each the same arithmetic as its sharq::cpu counterpart (this
// library builds with -fmad=false, like the CPU's -ffp-contract=off). Attention: attention.cu.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#include "launch.cuh"
#include "sharq/cuda/engine_ops.h"
#include "sharq/cuda/kernels.h"
#include "sharq/error.h"
#include "swiglu.cuh"

namespace sharq::cuda {
namespace {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items.
unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, 65535));
}

bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// out (t, d) = table[ids[i]] rows, in units of V (float or float4; dv = d / floats per V).
template <typename V>
__global__ void embedding_kernel(const V* __restrict__ table, int64_t dv,
                                 const int32_t* __restrict__ ids, int64_t t, V* __restrict__ out) {
  pdl_entry();
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < t * dv;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = e / dv, j = e % dv;
    out[e] = table[ids[i] * dv + j];
  }
}

// x_i^2 summed into ss in double (as the CPU), for the float and float4 loads of rms_norm_kernel.
__device__ __forceinline__ double add_squares(double ss, float v) {
  return ss + static_cast<double>(v) * v;
}
__device__ __forceinline__ double add_squares(double ss, float4 v) {
  return add_squares(add_squares(add_squares(add_squares(ss, v.x), v.y), v.z), v.w);
}
__device__ __forceinline__ float scale_by(float x, float inv, float w) {
  return x * inv * w;
}
__device__ __forceinline__ float4 scale_by(float4 x, float inv, float4 w) {
  return make_float4(x.x * inv * w.x, x.y * inv * w.y, x.z * inv * w.z, x.w * inv * w.w);
}

// One block per row (dv = d / (floats per V)): sum of squares in double (as the CPU), then
// out = x * inv * w. The loops are unrolled so a thread's loads are in flight together (one
// load latency per row, not one per element). x and out may alias: every thread reads its
// elements before it writes them.
// The norm weight is constant: a thread's first kPre elements of it load before the dependency
// wait (programmatic dependent launch), overlapping the kernel before.
template <typename V>
__global__ void rms_norm_kernel(const V* x, const V* __restrict__ w, int64_t dv, int64_t d,
                                float eps, V* out) {
  constexpr int kPre = 8;
  V wv[kPre];
#pragma unroll
  for (int i = 0; i < kPre; ++i) {
    const int64_t j = threadIdx.x + static_cast<int64_t>(i) * blockDim.x;
    if (j < dv) wv[i] = w[j];
  }
  pdl_entry();
  const V* xr = x + blockIdx.x * dv;
  V* o = out + blockIdx.x * dv;
  double ss = 0.0;
#pragma unroll 8
  for (int64_t j = threadIdx.x; j < dv; j += blockDim.x) ss = add_squares(ss, xr[j]);
  for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
  __shared__ double partial[kThreads / 32];
  __shared__ float inv_s;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = ss;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int i = 0; i < static_cast<int>(blockDim.x / 32); ++i) total += partial[i];
    inv_s = static_cast<float>(1.0 / sqrt(total / static_cast<double>(d) + eps));
  }
  __syncthreads();
  const float inv = inv_s;
#pragma unroll
  for (int i = 0; i < kPre; ++i) {
    const int64_t j = threadIdx.x + static_cast<int64_t>(i) * blockDim.x;
    if (j < dv) o[j] = scale_by(xr[j], inv, wv[i]);
  }
#pragma unroll 8
  for (int64_t j = threadIdx.x + kPre * static_cast<int64_t>(blockDim.x); j < dv; j += blockDim.x)
    o[j] = scale_by(xr[j], inv, w[j]);
}

// (cos, sin) of the angle pos * inv_freq as the CPU takes them: the angle in float32, cos and
// sin in double, rounded to float. Also rope_cos_sin_table's entries.
__device__ __forceinline__ float2 rope_cos_sin(float pos, float inv_freq) {
  double s, c;
  sincos(static_cast<double>(pos * inv_freq), &s, &c);
  return make_float2(static_cast<float>(c), static_cast<float>(s));
}

// Rotates pair (j, j + half) of one head at position pos (angle in float32, cos/sin in double, as
// the CPU) and returns the rotated pair.
__device__ __forceinline__ float2 rope_pair(float* xh, int64_t j, int64_t half, float pos,
                                            const float* __restrict__ inv_freq) {
  const float2 cs = rope_cos_sin(pos, inv_freq[j]);
  const float cf = cs.x, sf = cs.y;
  const float a = xh[j];
  const float b = xh[j + half];
  const float2 r = make_float2(a * cf - b * sf, b * cf + a * sf);
  xh[j] = r.x;
  xh[j + half] = r.y;
  return r;
}

// rope_cos_sin_table: one thread per (position, j).
__global__ void rope_table_kernel(const float* __restrict__ inv_freq, int64_t half, int64_t n,
                                  float2* __restrict__ table) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n;
       e += int64_t{gridDim.x} * blockDim.x) {
    table[e] = rope_cos_sin(static_cast<float>(e / half), inv_freq[e % half]);
  }
}

// One thread per (row, head, j < half): the angle and cos/sin per thread (the same arithmetic
// for every head), so no thread walks the heads one load after another.
__global__ void rope_kernel(float* x, int64_t rows, int64_t t, int64_t pos0, int64_t heads,
                            int64_t head_dim, const float* __restrict__ inv_freq,
                            const int64_t* pos_dev) {
  pdl_entry();
  if (pos_dev) pos0 = *pos_dev;
  const int64_t half = head_dim / 2;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < rows * heads * half;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t j = e % half, rh = e / half, r = rh / heads;
    rope_pair(x + rh * head_dim, j, half, static_cast<float>(pos0 + r % t), inv_freq);
  }
}

// A cache element from a float: itself, or the FP16 nearest to it (ties to even, as the CPU's
// f16_bits, codecs.h).
template <typename KV>
__device__ __forceinline__ KV to_cache(float x) {
  if constexpr (std::is_same_v<KV, __half>) {
    return __float2half_rn(x);
  } else {
    return x;
  }
}

// RoPE on q and k and the KV store in one pass: thread (row, head of q then of k, j < half); a k
// thread also writes its rotated pair and the same pair of v into the caches (as kv_store_kernel
// would copy them). KV: the caches' element (float or __half).
template <typename KV>
__global__ void rope_kv_store_kernel(float* q, float* k, const float* __restrict__ v, int64_t t,
                                     int64_t rows, int64_t pos0, int64_t heads, int64_t kv_heads,
                                     int64_t head_dim, const float* __restrict__ inv_freq,
                                     int64_t capacity, KV* __restrict__ kc, KV* __restrict__ vc,
                                     const int64_t* pos_dev) {
  pdl_entry();
  if (pos_dev) pos0 = *pos_dev;
  const int64_t half = head_dim / 2, all = heads + kv_heads;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < rows * all * half;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t j = e % half, h = (e / half) % all, row = e / (half * all);
    const float pos = static_cast<float>(pos0 + row % t);
    if (h < heads) {
      rope_pair(q + (row * heads + h) * head_dim, j, half, pos, inv_freq);
      continue;
    }
    const int64_t g = h - heads, src = (row * kv_heads + g) * head_dim;
    const float2 r = rope_pair(k + src, j, half, pos, inv_freq);
    const int64_t b = row / t, i = row % t;
    const int64_t dst = ((b * kv_heads + g) * capacity + pos0 + i) * head_dim;
    kc[dst + j] = to_cache<KV>(r.x);
    kc[dst + j + half] = to_cache<KV>(r.y);
    vc[dst + j] = to_cache<KV>(v[src + j]);
    vc[dst + j + half] = to_cache<KV>(v[src + j + half]);
  }
}

// Where element e of a (batch * t, kv_heads * hd) K or V input goes in its cache (batch,
// kv_heads, capacity, hd): row b * t + i to position pos0 + i of sequence b.
__device__ __forceinline__ int64_t cache_index(int64_t e, int64_t hd, int64_t kv_heads, int64_t t,
                                               int64_t capacity, int64_t pos0) {
  const int64_t c = e % hd;
  const int64_t g = (e / hd) % kv_heads;
  const int64_t row = e / (hd * kv_heads);  // b * t + i
  const int64_t b = row / t, i = row % t;
  return ((b * kv_heads + g) * capacity + pos0 + i) * hd + c;
}

// k, v: (batch * t, kv_heads * hd4) float4 -> caches (batch, kv_heads, capacity, hd4).
template <typename V>
__global__ void kv_store_kernel(const V* __restrict__ k, const V* __restrict__ v, int64_t batch,
                                int64_t t, int64_t pos0, int64_t kv_heads, int64_t hd,
                                int64_t capacity, V* __restrict__ kc, V* __restrict__ vc,
                                const int64_t* pos_dev) {
  pdl_entry();
  if (pos_dev) pos0 = *pos_dev;
  const int64_t n = batch * t * kv_heads * hd;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t dst = cache_index(e, hd, kv_heads, t, capacity, pos0);
    kc[dst] = k[e];
    vc[dst] = v[e];
  }
}

// The same into FP16 caches, W elements a thread: 4 (hd a multiple of 4, every pointer 16-byte
// aligned: one 16-byte load and one 8-byte store a cache) or 1 (any hd, any alignment). hdw =
// hd / W.
template <int W>
__global__ void kv_store_f16_kernel(const float* __restrict__ k, const float* __restrict__ v,
                                    int64_t batch, int64_t t, int64_t pos0, int64_t kv_heads,
                                    int64_t hdw, int64_t capacity, __half* __restrict__ kc,
                                    __half* __restrict__ vc, const int64_t* pos_dev) {
  pdl_entry();
  if (pos_dev) pos0 = *pos_dev;
  const int64_t n = batch * t * kv_heads * hdw;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t dst = cache_index(e, hdw, kv_heads, t, capacity, pos0) * W;
    if constexpr (W == 4) {
      const float4 kf = reinterpret_cast<const float4*>(k)[e];
      const float4 vf = reinterpret_cast<const float4*>(v)[e];
      const __half2 k01 = __floats2half2_rn(kf.x, kf.y), k23 = __floats2half2_rn(kf.z, kf.w);
      const __half2 v01 = __floats2half2_rn(vf.x, vf.y), v23 = __floats2half2_rn(vf.z, vf.w);
      *reinterpret_cast<uint2*>(kc + dst) = make_uint2(*reinterpret_cast<const uint32_t*>(&k01),
                                                       *reinterpret_cast<const uint32_t*>(&k23));
      *reinterpret_cast<uint2*>(vc + dst) = make_uint2(*reinterpret_cast<const uint32_t*>(&v01),
                                                       *reinterpret_cast<const uint32_t*>(&v23));
    } else {
      kc[dst] = __float2half_rn(k[e]);
      vc[dst] = __float2half_rn(v[e]);
    }
  }
}

__global__ void swiglu_kernel(const float* gate, const float* up, int64_t n, float* out) {
  pdl_entry();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = swiglu1(gate[i], up[i]);
  }
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  pdl_entry();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    x[i] += y[i];
  }
}

__global__ void add_bias_kernel(float* __restrict__ y, const float* __restrict__ bias, int64_t rows,
                                int64_t n) {
  pdl_entry();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < rows * n;
       i += int64_t{gridDim.x} * blockDim.x) {
    y[i] += bias[i % n];
  }
}

// codecs.h bf16_round: bits + 0x7FFF + lsb (uint32 wrap-around), keep the high half.
__global__ void round_to_bf16_kernel(const float* __restrict__ x, int64_t n,
                                     uint16_t* __restrict__ out) {
  pdl_entry();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    uint32_t bits = __float_as_uint(x[i]);
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    out[i] = static_cast<uint16_t>(bits >> 16);
  }
}

__global__ void bf16_to_f32_kernel(const uint16_t* __restrict__ in, int64_t n,
                                   float* __restrict__ out) {
  pdl_entry();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = __uint_as_float(static_cast<uint32_t>(in[i]) << 16);
  }
}

}  // namespace

void embedding(const float* table, int64_t vocab, int64_t d, const int32_t* ids, int64_t t,
               float* out, cudaStream_t stream) {
  (void)vocab;
  if (t <= 0 || d <= 0) return;
  if (d % 4 == 0 && aligned16(table) && aligned16(out)) {
    launch_pdl(embedding_kernel<float4>, dim3(grid_for(t * d / 4)), dim3(kThreads), 0, stream,
               "embedding_kernel", reinterpret_cast<const float4*>(table), d / 4, ids, t,
               reinterpret_cast<float4*>(out));
  } else {
    launch_pdl(embedding_kernel<float>, dim3(grid_for(t * d)), dim3(kThreads), 0, stream,
               "embedding_kernel", table, d, ids, t, out);
  }
}

void rms_norm(const float* x, const float* w, int64_t rows, int64_t d, float eps, float* out,
              cudaStream_t stream) {
  if (rows <= 0 || d <= 0) return;
  if (rows > 0x7fffffff) throw Error("rms_norm: " + std::to_string(rows) + " rows is too many");
  const auto grid = static_cast<unsigned>(rows);
  if (d % 4 == 0 && aligned16(x) && aligned16(w) && aligned16(out)) {
    launch_pdl(rms_norm_kernel<float4>, dim3(grid), dim3(kThreads), 0, stream, "rms_norm_kernel",
               reinterpret_cast<const float4*>(x), reinterpret_cast<const float4*>(w), d / 4, d,
               eps, reinterpret_cast<float4*>(out));
  } else {
    launch_pdl(rms_norm_kernel<float>, dim3(grid), dim3(kThreads), 0, stream, "rms_norm_kernel", x,
               w, d, d, eps, out);
  }
}

void rope(float* x, int64_t batch, int64_t t, int64_t pos0, int64_t heads, int64_t head_dim,
          const float* inv_freq, cudaStream_t stream, const int64_t* pos_dev) {
  if (head_dim <= 0 || head_dim % 2 != 0) {
    throw Error("rope: head_dim " + std::to_string(head_dim) + " must be positive and even");
  }
  if (batch <= 0 || t <= 0 || heads <= 0) return;
  const int64_t rows = batch * t;
  launch_pdl(rope_kernel, dim3(grid_for(rows * heads * head_dim / 2)), dim3(kThreads), 0, stream,
             "rope_kernel", x, rows, t, pos0, heads, head_dim, inv_freq, pos_dev);
}

void rope_cos_sin_table(const float* inv_freq, int64_t half, int64_t positions, float2* table,
                        cudaStream_t stream) {
  if (half <= 0 || positions < 0) {
    throw Error("rope table: half " + std::to_string(half) + ", positions " +
                std::to_string(positions));
  }
  const int64_t n = half * positions;
  if (n == 0) return;
  // A plain launch: no dependency wait to skip, nothing before it may still read the table.
  rope_table_kernel<<<grid_for(n), kThreads, 0, stream>>>(inv_freq, half, n, table);
  check(cudaGetLastError(), "rope_table_kernel launch");
}

void kv_store(const float* k, const float* v, int64_t batch, int64_t t, int64_t pos0,
              int64_t kv_heads, int64_t head_dim, int64_t capacity, float* k_cache, float* v_cache,
              cudaStream_t stream, const int64_t* pos_dev, KvCache kv) {
  if (pos0 < 0 || pos0 + t > capacity) {
    throw Error("kv cache: positions " + std::to_string(pos0) + ".." + std::to_string(pos0 + t) +
                " exceed its capacity " + std::to_string(capacity));
  }
  if (batch <= 0 || t <= 0 || kv_heads <= 0 || head_dim <= 0) return;
  const int64_t n = batch * t * kv_heads * head_dim;
  if (kv == KvCache::kF16) {
    auto* kh = reinterpret_cast<__half*>(k_cache);
    auto* vh = reinterpret_cast<__half*>(v_cache);
    if (head_dim % 4 == 0 && aligned16(k) && aligned16(v) && aligned16(k_cache) &&
        aligned16(v_cache)) {
      launch_pdl(kv_store_f16_kernel<4>, dim3(grid_for(n / 4)), dim3(kThreads), 0, stream,
                 "kv_store_f16_kernel", k, v, batch, t, pos0, kv_heads, head_dim / 4, capacity, kh,
                 vh, pos_dev);
    } else {
      launch_pdl(kv_store_f16_kernel<1>, dim3(grid_for(n)), dim3(kThreads), 0, stream,
                 "kv_store_f16_kernel", k, v, batch, t, pos0, kv_heads, head_dim, capacity, kh, vh,
                 pos_dev);
    }
    return;
  }
  if (head_dim % 4 == 0 && aligned16(k) && aligned16(v) && aligned16(k_cache) &&
      aligned16(v_cache)) {
    launch_pdl(kv_store_kernel<float4>, dim3(grid_for(n / 4)), dim3(kThreads), 0, stream,
               "kv_store_kernel", reinterpret_cast<const float4*>(k),
               reinterpret_cast<const float4*>(v), batch, t, pos0, kv_heads, head_dim / 4, capacity,
               reinterpret_cast<float4*>(k_cache), reinterpret_cast<float4*>(v_cache), pos_dev);
  } else {
    launch_pdl(kv_store_kernel<float>, dim3(grid_for(n)), dim3(kThreads), 0, stream,
               "kv_store_kernel", k, v, batch, t, pos0, kv_heads, head_dim, capacity, k_cache,
               v_cache, pos_dev);
  }
}

void rope_kv_store(float* q, float* k, const float* v, int64_t batch, int64_t t, int64_t pos0,
                   int64_t heads, int64_t kv_heads, int64_t head_dim, const float* inv_freq,
                   int64_t capacity, float* k_cache, float* v_cache, cudaStream_t stream,
                   const int64_t* pos_dev, KvCache kv) {
  if (head_dim <= 0 || head_dim % 2 != 0) {
    throw Error("rope: head_dim " + std::to_string(head_dim) + " must be positive and even");
  }
  if (pos0 < 0 || pos0 + t > capacity) {
    throw Error("kv cache: positions " + std::to_string(pos0) + ".." + std::to_string(pos0 + t) +
                " exceed its capacity " + std::to_string(capacity));
  }
  if (batch <= 0 || t <= 0 || heads <= 0 || kv_heads <= 0) return;
  const int64_t rows = batch * t;
  const dim3 grid(grid_for(rows * (heads + kv_heads) * head_dim / 2));
  if (kv == KvCache::kF16) {
    launch_pdl(rope_kv_store_kernel<__half>, grid, dim3(kThreads), 0, stream,
               "rope_kv_store_kernel", q, k, v, t, rows, pos0, heads, kv_heads, head_dim, inv_freq,
               capacity, reinterpret_cast<__half*>(k_cache), reinterpret_cast<__half*>(v_cache),
               pos_dev);
  } else {
    launch_pdl(rope_kv_store_kernel<float>, grid, dim3(kThreads), 0, stream, "rope_kv_store_kernel",
               q, k, v, t, rows, pos0, heads, kv_heads, head_dim, inv_freq, capacity, k_cache,
               v_cache, pos_dev);
  }
}

void swiglu(const float* gate, const float* up, int64_t n, float* out, cudaStream_t stream) {
  if (n <= 0) return;
  launch_pdl(swiglu_kernel, dim3(grid_for(n)), dim3(kThreads), 0, stream, "swiglu_kernel", gate, up,
             n, out);
}

void add(float* x, const float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  launch_pdl(add_kernel, dim3(grid_for(n)), dim3(kThreads), 0, stream, "add_kernel", x, y, n);
}

void add_bias(float* y, const float* bias, int64_t rows, int64_t n, cudaStream_t stream) {
  if (rows <= 0 || n <= 0) return;
  launch_pdl(add_bias_kernel, dim3(grid_for(rows * n)), dim3(kThreads), 0, stream,
             "add_bias_kernel", y, bias, rows, n);
}

void round_to_bf16(const float* x, int64_t n, uint16_t* out_bf16, cudaStream_t stream) {
  if (n <= 0) return;
  launch_pdl(round_to_bf16_kernel, dim3(grid_for(n)), dim3(kThreads), 0, stream,
             "round_to_bf16_kernel", x, n, out_bf16);
}

void bf16_to_f32(const uint16_t* in, int64_t n, float* out, cudaStream_t stream) {
  if (n <= 0) return;
  launch_pdl(bf16_to_f32_kernel, dim3(grid_for(n)), dim3(kThreads), 0, stream, "bf16_to_f32_kernel",
             in, n, out);
}

}  // namespace sharq::cuda
