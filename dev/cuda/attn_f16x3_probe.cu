// Prefill attention ladder (dev only, built by scripts/pack_device.sh). Written in session 15 and
// NOT yet run on a GPU: the next session's first attention call runs it.
//
// The library's prefill attention (src/cuda/attention.cu) runs its products in 3xTF32 on
// mma.sync m16n8k8. ncu of it (docs/RESULTS.md, issue 6, session 15) shows the tensor pipe busy
// 49% of cycles, with stalls on fixed-latency dependencies and the math pipe. This probe times
// the same flash kernel on FP16 halves with mma.sync m16n8k16: each operand x = hi + lo with hi,
// lo FP16, and a product is lo.hi + hi.lo + hi.hi into FP32 accumulators.
// - Per FLOP that is half the MMA instructions and half the tensor pipe's cycles of TF32.
// - P's A fragment is the score accumulators as they stand, with no key permutation.
// - The catch is range. FP16 holds |x| <= 65504, where TF32 has float32's range. A lo below 2^-14
//   is subnormal: its error is then absolute (2^-25), not relative.
// - A library version would need a guard: a power-of-two scale per tile, or the caches' maximum
//   published by the KV store.
//
// Reported, on the Llama-3.1-8B attention shape (32 heads, 8 KV heads, head_dim 128), for
// 1 x 2048 and 4 x 512 tokens and inputs of sigma 1 and 30: the time of the FP32 CUDA-core
// kernel, of the library's 3xTF32 kernel and of this 3xFP16 kernel (graph-timed medians); the
// largest absolute difference of the last two from the FP32 kernel; and the inputs' largest
// magnitude against FP16's range.
// Build (scripts/pack_device.sh does it): nvcc -std=c++20 -O3 -fmad=false
//   -gencode=arch=compute_90a,code=sm_90a -Iinclude dev/cuda/attn_f16x3_probe.cu
//   build-cuda/src/cuda/libsharq_cuda.a build-cuda/src/libsharq_core.a -lcublas
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "../../bench/cuda/bench_common.cuh"
#include "../../src/cuda/cp_async.cuh"
#include "sharq/cuda/engine_ops.h"
#include "sharq/cuda/kernels.h"

namespace {

using sharq::bench::dmalloc;
using sharq::bench::median_graph_us;
using sharq::cuda::check;
using sharq::cuda::cp_async16;
using sharq::cuda::cp_async_commit;
using sharq::cuda::cp_async_wait;
using sharq::cuda::smem_u32;

constexpr int kBM = 64, kBN = 64, kThreads = 128;

// Row strides: Q and K are read as float2 pairs (64-bit loads, conflict-free at D + 8), V as
// two scalar rows (conflict-free at D + 4).
template <int D>
__host__ __device__ constexpr int ld_qk() {
  return D + 8;
}
template <int D>
__host__ __device__ constexpr int ld_v() {
  return D + 4;
}
template <int D>
constexpr size_t smem_bytes() {
  return sizeof(float) * (size_t{kBM + kBN} * ld_qk<D>() + size_t{kBN} * ld_v<D>());
}

// (x0, x1) = hi + lo, each an FP16 pair (x0 in the low half); x - hi is exact in float32.
__device__ __forceinline__ void split_f16x2(float x0, float x1, uint32_t& hi, uint32_t& lo) {
  const __half2 h = __floats2half2_rn(x0, x1);
  const float2 f = __half22float2(h);
  const __half2 l = __floats2half2_rn(x0 - f.x, x1 - f.y);
  hi = *reinterpret_cast<const uint32_t*>(&h);
  lo = *reinterpret_cast<const uint32_t*>(&l);
}
__device__ __forceinline__ void mma_f16(float (&c)[4], const uint32_t (&a)[4],
                                        const uint32_t (&b)[2]) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void mma_3xf16(float (&c)[4], const uint32_t (&ahi)[4],
                                          const uint32_t (&alo)[4], const uint32_t (&bhi)[2],
                                          const uint32_t (&blo)[2]) {
  mma_f16(c, alo, bhi);
  mma_f16(c, ahi, blo);
  mma_f16(c, ahi, bhi);
}

template <int D, int R, int LD>
__device__ __forceinline__ void copy_tile_async(float* smem, const float* src, int64_t ld,
                                                int64_t r0, int64_t r_end) {
  constexpr int kV = D / 4;
  for (int x = threadIdx.x; x < R * kV; x += kThreads) {
    const int r = x / kV, c = x % kV;
    const bool in = r0 + r < r_end;
    cp_async16(smem_u32(smem + r * LD + 4 * c), in ? src + (r0 + r) * ld + 4 * c : src,
               in ? 16 : 0);
  }
}

// The library kernel's structure (one block = 64 query rows of one head, four warps of 16 rows,
// 64-key tiles, V's copy under the scores and the next K's under P.V) with m16n8k16 fragments:
// A rows g and g + 8, columns 2 tg, 2 tg + 1 and those + 8; B column g, rows the same; C as
// m16n8k8's. The scores of n-tiles 2 j and 2 j + 1 are then P's A fragment for keys 16 j ..
// 16 j + 15 as they stand.
template <int D>
__global__ void __launch_bounds__(kThreads, 2)
    attn_prefill_f16x3(const float* __restrict__ q, int64_t t, int64_t pos0, int heads,
                       int kv_heads, int64_t capacity, const float* __restrict__ kc,
                       const float* __restrict__ vc, float scale, float* __restrict__ out) {
  constexpr int LQ = ld_qk<D>(), LV = ld_v<D>(), NT = D / 8, KT = kBN / 8;
  extern __shared__ float4 smem4[];
  float* qs = reinterpret_cast<float*>(smem4);  // (BM, LQ)
  float* ks = qs + kBM * LQ;                    // (BN, LQ)
  float* vs = ks + kBN * LQ;                    // (BN, LV)
  const int lane = threadIdx.x % 32, g = lane / 4, tg = lane % 4;
  const int qr = (threadIdx.x / 32) * 16 + g;
  const int64_t m0 = int64_t{gridDim.x - 1 - blockIdx.x} * kBM;
  const int h = static_cast<int>(blockIdx.y);
  const int64_t b = blockIdx.z;
  const int64_t kvh = h / (heads / kv_heads);
  const int64_t ld = int64_t{heads} * D;
  const float* kb = kc + (b * kv_heads + kvh) * capacity * D;
  const float* vb = vc + (b * kv_heads + kvh) * capacity * D;
  const int64_t n_end = pos0 + (m0 + kBM < t ? m0 + kBM : t);
  const int64_t qpos[2] = {pos0 + m0 + qr, pos0 + m0 + qr + 8};

  copy_tile_async<D, kBM, LQ>(qs, q + b * t * ld + h * D, ld, m0, t);
  copy_tile_async<D, kBN, LQ>(ks, kb, D, 0, n_end);
  cp_async_commit();

  float o[NT][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  for (int64_t n0 = 0; n0 < n_end; n0 += kBN) {
    copy_tile_async<D, kBN, LV>(vs, vb, D, n0, n_end);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    float s[KT][4] = {};
#pragma unroll 2
    for (int kk = 0; kk < D; kk += 16) {
      uint32_t ahi[4], alo[4];
      const float* qa = qs + qr * LQ + kk + 2 * tg;
      const float2 q0 = *reinterpret_cast<const float2*>(qa);
      const float2 q1 = *reinterpret_cast<const float2*>(qa + 8 * LQ);
      const float2 q2 = *reinterpret_cast<const float2*>(qa + 8);
      const float2 q3 = *reinterpret_cast<const float2*>(qa + 8 * LQ + 8);
      split_f16x2(q0.x, q0.y, ahi[0], alo[0]);
      split_f16x2(q1.x, q1.y, ahi[1], alo[1]);
      split_f16x2(q2.x, q2.y, ahi[2], alo[2]);
      split_f16x2(q3.x, q3.y, ahi[3], alo[3]);
#pragma unroll
      for (int nt = 0; nt < KT; ++nt) {
        const float* kp = ks + (8 * nt + g) * LQ + kk + 2 * tg;
        const float2 k0 = *reinterpret_cast<const float2*>(kp);
        const float2 k1 = *reinterpret_cast<const float2*>(kp + 8);
        uint32_t bhi[2], blo[2];
        split_f16x2(k0.x, k0.y, bhi[0], blo[0]);
        split_f16x2(k1.x, k1.y, bhi[1], blo[1]);
        mma_3xf16(s[nt], ahi, alo, bhi, blo);
      }
    }
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int nt = 0; nt < KT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = n0 + 8 * nt + 2 * tg + (e & 1);
        s[nt][e] = key <= qpos[e >> 1] ? s[nt][e] * scale : -INFINITY;
        mx[e >> 1] = fmaxf(mx[e >> 1], s[nt][e]);
      }
    }
    float corr[2], rs[2] = {0.0f, 0.0f};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      corr[r] = expf(m[r] - mx[r]);
      m[r] = mx[r];
    }
#pragma unroll
    for (int nt = 0; nt < KT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = expf(s[nt][e] - mx[e >> 1]);
        rs[e >> 1] += s[nt][e];
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) l[r] = l[r] * corr[r] + rs[r];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      o[nt][0] *= corr[0];
      o[nt][1] *= corr[0];
      o[nt][2] *= corr[1];
      o[nt][3] *= corr[1];
    }
    __syncthreads();
    if (n0 + kBN < n_end) copy_tile_async<D, kBN, LQ>(ks, kb, D, n0 + kBN, n_end);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
#pragma unroll
    for (int j = 0; j < KT / 2; ++j) {
      uint32_t ahi[4], alo[4];
      split_f16x2(s[2 * j][0], s[2 * j][1], ahi[0], alo[0]);
      split_f16x2(s[2 * j][2], s[2 * j][3], ahi[1], alo[1]);
      split_f16x2(s[2 * j + 1][0], s[2 * j + 1][1], ahi[2], alo[2]);
      split_f16x2(s[2 * j + 1][2], s[2 * j + 1][3], ahi[3], alo[3]);
      const float* vp = vs + (16 * j + 2 * tg) * LV + g;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        uint32_t bhi[2], blo[2];
        split_f16x2(vp[8 * nt], vp[LV + 8 * nt], bhi[0], blo[0]);
        split_f16x2(vp[8 * LV + 8 * nt], vp[9 * LV + 8 * nt], bhi[1], blo[1]);
        mma_3xf16(o[nt], ahi, alo, bhi, blo);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = l[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const int64_t row = m0 + qr + 8 * r;
    if (row >= t) continue;
    float* dst = out + (b * t + row) * ld + h * D + 2 * tg;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      *reinterpret_cast<float2*>(dst + 8 * nt) =
          make_float2(o[nt][2 * r] / sum, o[nt][2 * r + 1] / sum);
    }
  }
}

float max_abs(const std::vector<float>& v) {
  float m = 0.0f;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

float max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) {
    const float d = std::fabs(a[i] - b[i]);
    m = std::isnan(d) ? INFINITY : std::max(m, d);
  }
  return m;
}

std::vector<float> download(const float* d, size_t n) {
  std::vector<float> h(n);
  check(cudaMemcpy(h.data(), d, n * 4, cudaMemcpyDeviceToHost), "d2h");
  return h;
}

void run_case(cudaStream_t s, int64_t batch, int64_t t, float sigma) {
  constexpr int D = 128;
  const int64_t heads = 32, kvh = 8, cap = t;
  const size_t nq = size_t(batch * t * heads * D), nkv = size_t(batch * kvh * cap * D);
  auto* q = static_cast<float*>(dmalloc(nq * 4));
  auto* kc = static_cast<float*>(dmalloc(nkv * 4));
  auto* vc = static_cast<float*>(dmalloc(nkv * 4));
  auto* out = static_cast<float*>(dmalloc(nq * 4));
  std::mt19937_64 rng(uint64_t(batch * t) + uint64_t(sigma));
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> hq(nq), hk(nkv), hv(nkv);
  for (auto* v : {&hq, &hk, &hv}) {
    for (float& x : *v) x = nd(rng);
  }
  check(cudaMemcpy(q, hq.data(), nq * 4, cudaMemcpyHostToDevice), "h2d");
  check(cudaMemcpy(kc, hk.data(), nkv * 4, cudaMemcpyHostToDevice), "h2d");
  check(cudaMemcpy(vc, hv.data(), nkv * 4, cudaMemcpyHostToDevice), "h2d");
  const float range = std::max({max_abs(hq), max_abs(hk), max_abs(hv)});
  const float scale = 1.0f / std::sqrt(float(D));

  auto library = [&](int) {
    sharq::cuda::attention(q, batch, t, 0, heads, kvh, D, cap, kc, vc, out, nullptr, 0, s);
  };
  constexpr size_t smem = smem_bytes<D>();
  check(cudaFuncSetAttribute(attn_prefill_f16x3<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             int(smem)),
        "smem");
  const dim3 grid(unsigned((t + kBM - 1) / kBM), unsigned(heads), unsigned(batch));
  auto probe = [&](int) {
    attn_prefill_f16x3<D>
        <<<grid, kThreads, smem, s>>>(q, t, 0, int(heads), int(kvh), cap, kc, vc, scale, out);
  };

  sharq::cuda::testing::attention_prefill_fp32(true);
  library(0);
  check(cudaStreamSynchronize(s), "fp32 kernel");
  const auto ref = download(out, nq);
  const double t_fp32 = median_graph_us(s, library, 5, 9);
  sharq::cuda::testing::attention_prefill_fp32(false);
  library(0);
  check(cudaStreamSynchronize(s), "tf32x3 kernel");
  const auto tf32 = download(out, nq);
  const double t_tf32 = median_graph_us(s, library, 5, 9);
  check(cudaMemset(out, 0xFF, nq * 4), "poison");  // NaN: every output must be written
  probe(0);
  check(cudaStreamSynchronize(s), "f16x3 kernel");
  const auto f16 = download(out, nq);
  const double t_f16 = median_graph_us(s, probe, 5, 9);
  const double t_tf32_again = median_graph_us(s, library, 5, 9);
  std::printf(
      "| %lld x %lld | %.0f | %.3g | %.1f | %.1f (%.1f again) | %.1f | %.2e | %.2e | %.2e |\n",
      (long long)batch, (long long)t, sigma, range, t_fp32, t_tf32, t_tf32_again, t_f16,
      max_abs(ref), max_diff(tf32, ref), max_diff(f16, ref));
  for (void* p : {(void*)q, (void*)kc, (void*)vc, (void*)out}) cudaFree(p);
}

}  // namespace

int main() {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "props");
  std::printf("device: %s\n\n", prop.name);
  std::printf(
      "| batch x t | sigma | max |input| (FP16 max 65504) | FP32 cores (us) | 3xTF32 (us) | 3xFP16 "
      "(us) | max |out| | 3xTF32 max diff vs FP32 | 3xFP16 max diff vs FP32 |\n"
      "|---|---|---|---|---|---|---|---|---|\n");
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
  for (float sigma : {1.0f, 30.0f}) {
    run_case(s, 1, 2048, sigma);
    run_case(s, 4, 512, sigma);
  }
  return 0;
}
