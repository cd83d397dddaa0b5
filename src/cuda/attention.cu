// Causal GQA attention over the KV cache (float32, or FP16 with --kv-cache f16) with an online
// softmax: for t < 8 split-key decode (flash-decoding: key ranges over blocks, then a combine
// pass), on FP32 CUDA cores over a float32 cache and on tensor cores over an FP16 one; for
// prefill a tiled flash kernel on tensor cores, each product as three products of FP16 halves
// (two over an FP16 cache, whose K and V are FP16 already; float32-grade either way; TF32 halves
// and the FP32 CUDA-core flash kernel stay for A/B on a float32 cache,
// SHARQ_CUDA_ATTN_PREFILL=tf32|fp32).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "cp_async.cuh"
#include "device_info.cuh"
#include "launch.cuh"
#include "sharq/cuda/attn_split_rule.h"
#include "sharq/cuda/engine_ops.h"
#include "sharq/cuda/kernels.h"
#include "sharq/error.h"
#include "tensor_max.cuh"
#include "wgmma_sp.cuh"

namespace sharq::cuda {
namespace {

// ---- Decode: one block = one query row, one kv head, up to QH of its query heads, one key
// range. A key row is read by L = D / 8 lanes (two float4 each), so a warp covers 32 / L keys per
// step; every warp keeps its own online softmax, merged at the end. Measured no faster on an H200
// (session 23, docs/RESULTS.md): K/V staged in shared memory with a head group's ranges as one
// cluster combined through distributed shared memory (no combine launch; 10% slower at batch 8),
// and per-warp tiles with one softmax update a tile. At batch 1 the cost is the launch chain. ----
constexpr int kDecodeWarps = 4;
constexpr int kDecodeThreads = kDecodeWarps * 32;
constexpr int64_t kDecodeMaxT = 8;  // t below this takes the decode path
// Key ranges are multiples of kSplitKeys (16 measured slower); the rule: attn_split_rule.h.
constexpr int64_t kSplitKeys = attn_split::kSplitKeys;
constexpr int kBlocksPerSm = 4;  // decode blocks resident an SM (128 registers, 128 threads)
// The FP16-cache (tensor-core) kernel's plan: 3 blocks are resident an SM at head_dim 128 (155
// registers, ~70 KB of shared memory), but a plan for 6 measured best at batch 8-32 (H200,
// session 24: batch 32 3 ranges 45.8 us a layer, 1 range 49.0); ranges of whole 64-key granules
// so that all four warps get a 16-key tile (batch 1: 17 ranges 8.1 us, 34 of 32 keys 8.6).
constexpr int kTcDecodeSlotsPerSm = 6;
constexpr int64_t kTcDecodeGranule = 64;
constexpr int64_t kMaxCombineSplits = attn_split::kMaxSplits;  // the combine's shared weights

struct DecodePlan {
  int qh;          // query heads per block: 1, 2, 4 or 8
  int chunks;      // blocks per kv head (ceil(group / qh))
  int64_t splits;  // key ranges
  int64_t per_split;
  int64_t splits_bound;  // >= splits, never smaller for a larger ctx (sizes the workspace)
};

// Query heads per block and the key ranges (attn_split_rule.h) for the device's SMs: the
// float32 kernel's (4 blocks an SM, 32-key granules) or, fp16, the FP16-cache kernel's.
DecodePlan decode_plan(int64_t batch, int64_t t, int64_t heads, int64_t kv_heads, int64_t ctx,
                       bool fp16 = false) {
  const int64_t group = heads / kv_heads;
  DecodePlan p{};
  p.qh = group >= 8 ? 8 : group > 2 ? 4 : static_cast<int>(group);
  p.chunks = static_cast<int>((group + p.qh - 1) / p.qh);
  const attn_split::Split sp =
      fp16 ? attn_split::choose(batch * t * kv_heads * p.chunks, ctx,
                                int64_t{kTcDecodeSlotsPerSm} * sm_count(), kTcDecodeGranule)
           : attn_split::choose(batch * t * kv_heads * p.chunks, ctx,
                                int64_t{kBlocksPerSm} * sm_count());
  p.splits = sp.splits;
  p.per_split = sp.per_split;
  p.splits_bound = sp.splits_bound;
  return p;
}

__device__ __forceinline__ void load8(const float* p, int li, int lanes, float (&r)[8]) {
  const float4 a = *reinterpret_cast<const float4*>(p + 4 * li);
  const float4 b = *reinterpret_cast<const float4*>(p + 4 * (li + lanes));
  r[0] = a.x, r[1] = a.y, r[2] = a.z, r[3] = a.w;
  r[4] = b.x, r[5] = b.y, r[6] = b.z, r[7] = b.w;
}

// rope_attention_decode's inputs: the step's k and v rows (batch, kv_heads * D), unrotated, the
// (cos, sin) table (positions x D / 2), and the caches to store the new rows into.
struct RopeIn {
  const float* k;
  const float* v;
  const float2* cos_sin;
  float* kc;
  float* vc;
};

// A lane's 8 elements (4 li + e and 4 li + e + D / 2, e < 4: load8's layout, the rotate-half
// pairs) rotated as engine_ops.cu's rope_pair does: (a cos - b sin, b cos + a sin).
__device__ __forceinline__ void rotate8(float (&r)[8], const float (&cs)[4], const float (&sn)[4]) {
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const float a = r[e], b = r[4 + e];
    r[e] = a * cs[e] - b * sn[e];
    r[4 + e] = b * cs[e] + a * sn[e];
  }
}

// The block's warps' partial results merged, (j, d) pairs a thread: the output of heads rh0 ..
// rh0 + nh - 1 (one key range), or split s's partials. sm_acc: (warps, QH, D); sm_m, sm_l:
// (warps, QH), a warp that saw no key with max -inf. Ends the kernel's use of them.
template <int D, int QH>
__device__ __forceinline__ void store_merged(const float* sm_acc, const float* sm_m,
                                             const float* sm_l, int nh, int64_t rh0, int s,
                                             int splits, float* __restrict__ out,
                                             float* __restrict__ ws_o, float2* __restrict__ ws_ml) {
  for (int x = threadIdx.x; x < QH * D; x += kDecodeThreads) {
    const int j = x / D, d = x % D;
    if (j >= nh) break;
    float mx = -INFINITY;
    for (int w = 0; w < kDecodeWarps; ++w) mx = fmaxf(mx, sm_m[w * QH + j]);
    float sum = 0.0f, o = 0.0f;
    for (int w = 0; w < kDecodeWarps; ++w) {
      if (sm_m[w * QH + j] == -INFINITY) continue;
      const float c = expf(sm_m[w * QH + j] - mx);
      sum = __fmaf_rn(sm_l[w * QH + j], c, sum);
      o = __fmaf_rn(sm_acc[(w * QH + j) * D + d], c, o);
    }
    const int64_t rh = rh0 + j;
    if (splits == 1) {
      out[rh * D + d] = o / sum;
    } else {
      ws_o[(rh * splits + s) * D + d] = o;
      if (d == 0) ws_ml[rh * splits + s] = make_float2(mx, sum);
    }
  }
}

// What a decode block works on: key range s = blockIdx.x, kv head and chunk of its query heads
// from blockIdx.y, query row b * t + i = blockIdx.z; heads h0 .. h0 + nh - 1, keys [k0, k1) of
// the sequence's cache rows kb, vb.
template <int D, int QH, typename KV>
struct DecodeBlock {
  int s, h0, nh;
  int64_t row, k0, k1;
  const KV* kb;
  const KV* vb;
  __device__ DecodeBlock(int64_t t, int64_t pos0, int heads, int kv_heads, int chunks,
                         int64_t capacity, const KV* kc, const KV* vc, int64_t per_split)
      : s(static_cast<int>(blockIdx.x)), row(blockIdx.z) {
    const int kvh = blockIdx.y / chunks, chunk = blockIdx.y % chunks;
    const int64_t b = row / t, i = row % t;
    const int group = heads / kv_heads;
    h0 = kvh * group + chunk * QH;
    nh = min(QH, group - chunk * QH);
    const int64_t ctx = pos0 + i + 1;
    k0 = s * per_split;
    k1 = ctx < k0 + per_split ? ctx : k0 + per_split;
    kb = kc + (b * kv_heads + kvh) * capacity * D;
    vb = vc + (b * kv_heads + kvh) * capacity * D;
  }
};

// The first keys of the block's range [k0, k1) fetched into L2 (before the dependency wait:
// earlier steps' rows are final). At most kSplitKeys keys: at batch 32 a block's range is ~350
// keys, and all of them from every resident block would overflow L2 before the loop reads them.
template <int D, typename KV>
__device__ __forceinline__ void prefetch_first_keys(const KV* kb, const KV* vb, int64_t k0,
                                                    int64_t k1) {
  constexpr int kLineElems = 128 / static_cast<int>(sizeof(KV));
  constexpr int kLines = D / kLineElems;  // 128-byte lines per row
  const int64_t pre_keys = k1 - k0 < kSplitKeys ? k1 - k0 : kSplitKeys;
  for (int64_t x = threadIdx.x; x < pre_keys * kLines; x += kDecodeThreads) {
    const int64_t off = (k0 + x / kLines) * D + (x % kLines) * kLineElems;
    asm volatile("prefetch.global.L2 [%0];" ::"l"(kb + off));
    asm volatile("prefetch.global.L2 [%0];" ::"l"(vb + off));
  }
}

// Partial results of split s for (row, head) when splits > 1:
//   ws_o: (rows, heads, splits, D) unnormalized sum p * v; ws_ml: (rows, heads, splits) (max, sum).
// A float32 cache (an FP16 one: attn_decode_tc_kernel). ROPE (t = 1, rope_attention_decode): q
// and the step's key are rotated here and the new k, v rows come from `rope`, not the cache.
template <int D, int QH, bool ROPE>
__global__ void __launch_bounds__(kDecodeThreads)
    attn_decode_kernel(const float* __restrict__ q, int64_t t, int64_t pos0, int heads,
                       int kv_heads, int chunks, int64_t capacity, const float* __restrict__ kc,
                       const float* __restrict__ vc, float scale, int64_t per_split, int splits,
                       float* __restrict__ out, float* __restrict__ ws_o,
                       float2* __restrict__ ws_ml, const int64_t* pos_dev, RopeIn rope) {
  // The step's position (the recorded step's first node wrote it) and the keys of earlier steps
  // are final before the kernel before this one started, so the block's first keys are fetched
  // into L2 before the dependency wait, overlapping that kernel (RoPE + KV store, which writes
  // this step's rows: read only after the wait; L2 is coherent, so the prefetch cannot serve a
  // stale line). q is that kernel's output: read after the wait.
  if (pos_dev) pos0 = *pos_dev;
  constexpr int L = D / 8;     // lanes per key row
  constexpr int KPW = 32 / L;  // keys per warp step
  constexpr int kStep = kDecodeWarps * KPW;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int sub = lane / L, li = lane % L;
  const DecodeBlock<D, QH, float> blk(t, pos0, heads, kv_heads, chunks, capacity, kc, vc,
                                      per_split);
  const int s = blk.s, h0 = blk.h0, nh = blk.nh;
  const int64_t row = blk.row, k0 = blk.k0, k1 = blk.k1;
  const float* kb = blk.kb;
  const float* vb = blk.vb;
  prefetch_first_keys<D>(kb, vb, k0, k1);
  // ROPE: cos and sin of the lane's four pairs at the step's position, from the table, before
  // the wait (the position and the table are final by then). Computing them here (sincos in
  // double, four a lane in every block) put ~2.5 us on the batch-1 chain (H200, session 29).
  float cs[4] = {}, sn[4] = {};
  if constexpr (ROPE) {
    const float4* row = reinterpret_cast<const float4*>(rope.cos_sin + pos0 * (D / 2) + 4 * li);
    const float4 a = __ldg(row), b = __ldg(row + 1);
    cs[0] = a.x, sn[0] = a.y, cs[1] = a.z, sn[1] = a.w;
    cs[2] = b.x, sn[2] = b.y, cs[3] = b.z, sn[3] = b.w;
  }
  pdl_entry();

  float qr[QH][8];
#pragma unroll
  for (int j = 0; j < QH; ++j) {
    if (j < nh) {
      load8(q + (row * heads + h0 + j) * D, li, L, qr[j]);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) qr[j][e] = 0.0f;
    }
    if constexpr (ROPE) rotate8(qr[j], cs, sn);
  }
  // ROPE: the step's key (position pos0, t = 1) rotated from `rope.k`, v from `rope.v`, by warp
  // 0 of the block whose range holds it, into shared memory (the loop takes that key from there,
  // not from the cache) and, in the kv head's first chunk of query heads, into the caches.
  const int64_t knew = ROPE ? pos0 : -1;
  __shared__ float new_kv[ROPE ? 2 : 1][ROPE ? D : 1];
  if constexpr (ROPE) {
    if (knew >= k0 && knew < k1 && warp == 0 && sub == 0) {
      const int kvh = static_cast<int>(blockIdx.y) / chunks;
      const int64_t src = (row * kv_heads + kvh) * D;
      float kq[8], vq[8];
      load8(rope.k + src, li, L, kq);
      load8(rope.v + src, li, L, vq);
      rotate8(kq, cs, sn);
      const bool store = static_cast<int>(blockIdx.y) % chunks == 0;
      const int64_t dst = ((row * kv_heads + kvh) * capacity + knew) * D;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int c = 4 * (li + h * L);
        const float4 kk = make_float4(kq[4 * h], kq[4 * h + 1], kq[4 * h + 2], kq[4 * h + 3]);
        const float4 vv = make_float4(vq[4 * h], vq[4 * h + 1], vq[4 * h + 2], vq[4 * h + 3]);
        *reinterpret_cast<float4*>(&new_kv[0][c]) = kk;
        *reinterpret_cast<float4*>(&new_kv[1][c]) = vv;
        if (store) {
          *reinterpret_cast<float4*>(rope.kc + dst + c) = kk;
          *reinterpret_cast<float4*>(rope.vc + dst + c) = vv;
        }
      }
    }
    __syncthreads();
  }
  float m[QH], l[QH], acc[QH][8];
#pragma unroll
  for (int j = 0; j < QH; ++j) {
    m[j] = -INFINITY;
    l[j] = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[j][e] = 0.0f;
  }

  // Software pipeline: the next step's K and V rows load while this step computes.
  float kr[8] = {}, vr[8] = {};
  int64_t key = k0 + warp * KPW + sub;
  if (ROPE && key == knew && knew < k1) {  // in range: this block filled new_kv
    load8(&new_kv[0][0], li, L, kr);
    load8(&new_kv[1][0], li, L, vr);
  } else if (key < k1) {
    load8(kb + key * D, li, L, kr);
    load8(vb + key * D, li, L, vr);
  }
  for (int64_t base = k0 + warp * KPW; base < k1; base += kStep) {
    key = base + sub;
    const int64_t next = key + kStep;
    float kn[8] = {}, vn[8] = {};
    if (ROPE && next == knew && knew < k1) {
      load8(&new_kv[0][0], li, L, kn);
      load8(&new_kv[1][0], li, L, vn);
    } else if (next < k1) {
      load8(kb + next * D, li, L, kn);
      load8(vb + next * D, li, L, vn);
    }
    float sc[QH];
#pragma unroll
    for (int j = 0; j < QH; ++j) {
      float dot = 0.0f;
#pragma unroll
      for (int e = 0; e < 8; ++e) dot = __fmaf_rn(qr[j][e], kr[e], dot);
#pragma unroll
      for (int off = L / 2; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
      sc[j] = dot * scale;
    }
    if (key < k1) {
#pragma unroll
      for (int j = 0; j < QH; ++j) {
        const float mn = fmaxf(m[j], sc[j]);
        const float c = expf(m[j] - mn);  // 0 while m is -inf
        const float p = expf(sc[j] - mn);
        l[j] = __fmaf_rn(l[j], c, p);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[j][e] = __fmaf_rn(p, vr[e], acc[j][e] * c);
        m[j] = mn;
      }
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) kr[e] = kn[e], vr[e] = vn[e];
  }

  // Merge the warp's key subgroups (lanes li, li + L, li + 2L, ...).
#pragma unroll
  for (int off = L; off < 32; off <<= 1) {
#pragma unroll
    for (int j = 0; j < QH; ++j) {
      const float mo = __shfl_xor_sync(0xffffffffu, m[j], off);
      const float lo = __shfl_xor_sync(0xffffffffu, l[j], off);
      const float mn = fmaxf(m[j], mo);
      const float c1 = m[j] == -INFINITY ? 0.0f : expf(m[j] - mn);
      const float c2 = mo == -INFINITY ? 0.0f : expf(mo - mn);
      l[j] = l[j] * c1 + lo * c2;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float ao = __shfl_xor_sync(0xffffffffu, acc[j][e], off);
        acc[j][e] = __fmaf_rn(ao, c2, acc[j][e] * c1);
      }
      m[j] = mn;
    }
  }

  // Merge the warps through shared memory.
  __shared__ float sm_acc[kDecodeWarps][QH][D];
  __shared__ float sm_m[kDecodeWarps][QH], sm_l[kDecodeWarps][QH];
  if (sub == 0) {
#pragma unroll
    for (int j = 0; j < QH; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        sm_acc[warp][j][4 * li + e] = acc[j][e];
        sm_acc[warp][j][4 * (li + L) + e] = acc[j][4 + e];
      }
      if (li == 0) sm_m[warp][j] = m[j], sm_l[warp][j] = l[j];
    }
  }
  __syncthreads();
  store_merged<D, QH>(&sm_acc[0][0][0], &sm_m[0][0], &sm_l[0][0], nh, row * heads + h0, s, splits,
                      out, ws_o, ws_ml);
}

// out (rows * heads, D) from the splits' partials; one block of D threads per (row, head). The
// splits' (max, sum) pairs load in parallel (a thread each) and their weights go through shared
// memory, so the output loop's loads do not wait on one another.
// PUBLISH: also the tensor max of out for the FP4 prepare of the o projection's input
// (TensorMaxSink; that prepare then runs only its pass, prepare_pass).
template <int D, bool PUBLISH>
__global__ void __launch_bounds__(D)
    attn_combine_kernel(const float* __restrict__ ws_o, const float2* __restrict__ ws_ml,
                        int splits, float* __restrict__ out, const TensorMaxSink sink) {
  pdl_entry();
  __shared__ float c_s[kMaxCombineSplits];
  __shared__ float red[32];
  __shared__ float mx_s, sum_s;
  __shared__ float l_s[kMaxCombineSplits];
  const int64_t rh = blockIdx.x;
  const int d = threadIdx.x, lane = d & 31, warp = d >> 5;
  const float2* ml = ws_ml + rh * splits;
  // The first kPre partials of this thread's output element load at once, with the (max, sum)
  // pairs, instead of in the output loop's batches: one L2 round trip instead of four at the
  // decode step's 32 splits. The sums below keep their order (the same bits).
  constexpr int kPre = 32;
  float pre[kPre];
#pragma unroll
  for (int s = 0; s < kPre; ++s) pre[s] = s < splits ? ws_o[(rh * splits + s) * D + d] : 0.0f;
  float mx = -INFINITY;
  for (int s = d; s < splits; s += D) mx = fmaxf(mx, ml[s].x);
  for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
  if (lane == 0) red[warp] = mx;
  __syncthreads();
  if (d == 0) {
    float m = red[0];
    for (int w = 1; w < D / 32; ++w) m = fmaxf(m, red[w]);
    mx_s = m;
  }
  __syncthreads();
  mx = mx_s;
  for (int s = d; s < splits; s += D) {
    const float2 v = ml[s];
    c_s[s] = v.x == -INFINITY ? 0.0f : expf(v.x - mx);  // an empty key range weighs 0
    l_s[s] = v.y;
  }
  __syncthreads();
  if (d == 0) {  // the softmax denominator, splits in order
    float sum = 0.0f;
    for (int s = 0; s < splits; ++s) sum = __fmaf_rn(l_s[s], c_s[s], sum);
    sum_s = sum;
  }
  float o = 0.0f;
#pragma unroll
  for (int s = 0; s < kPre; ++s) {
    if (s < splits) o = __fmaf_rn(pre[s], c_s[s], o);
  }
#pragma unroll 8
  for (int s = kPre; s < splits; ++s) o = __fmaf_rn(ws_o[(rh * splits + s) * D + d], c_s[s], o);
  __syncthreads();
  const float r = o / sum_s;
  out[rh * D + d] = r;
  if (PUBLISH)
    publish_tensor_max(sink.scratch, block_max(fabsf(r), red), sink.ts_sparse, sink.ts_residual);
}

// ---- Prefill: one block = one (sequence, head, tile of BM query rows); key tiles of BN rows
// in shared memory (K, then V in the same buffer), scores and P.V in FP32 registers. ----
constexpr int kBM = 64, kBN = 64, kPrefillThreads = 256;

template <int D>
constexpr size_t prefill_smem_bytes() {
  return sizeof(float) * (size_t{kBM} * (D + 4) + size_t{kBN} * (D + 4) + size_t{kBM} * (kBN + 4));
}

// Loads rows [r0, r0 + R) of a (rows, ld) matrix into smem (R, D + 4); rows >= r_end are zero.
template <int D, int R>
__device__ __forceinline__ void load_tile(float* smem, const float* src, int64_t ld, int64_t r0,
                                          int64_t r_end) {
  constexpr int kV = D / 4;
  for (int x = threadIdx.x; x < R * kV; x += kPrefillThreads) {
    const int r = x / kV, c = x % kV;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r0 + r < r_end) v = *reinterpret_cast<const float4*>(src + (r0 + r) * ld + 4 * c);
    *reinterpret_cast<float4*>(smem + r * (D + 4) + 4 * c) = v;
  }
}

// The (sequence, head, tile of query rows) a prefill block works on, heaviest tiles (the last
// rows, which see the most keys) first, and its kv head's cache rows (KV: float or __half).
template <int D, typename KV = float>
struct PrefillBlock {
  int64_t m0, b, ld;  // first query row, sequence, q/out row stride
  int h;
  const KV* kb;
  const KV* vb;
  __device__ PrefillBlock(int bm, int heads, int kv_heads, int64_t capacity, const KV* kc,
                          const KV* vc)
      : m0(int64_t{gridDim.x - 1 - blockIdx.x} * bm),
        b(blockIdx.z),
        ld(int64_t{heads} * D),
        h(static_cast<int>(blockIdx.y)) {
    const int64_t kvh = h / (heads / kv_heads);
    kb = kc + (b * kv_heads + kvh) * capacity * D;
    vb = vc + (b * kv_heads + kvh) * capacity * D;
  }
};

template <int D>
__global__ void __launch_bounds__(kPrefillThreads, 2)
    attn_prefill_kernel(const float* __restrict__ q, int64_t t, int64_t pos0, int heads,
                        int kv_heads, int64_t capacity, const float* __restrict__ kc,
                        const float* __restrict__ vc, float scale, float* __restrict__ out,
                        const int64_t* pos_dev) {
  pdl_entry();
  if (pos_dev) pos0 = *pos_dev;
  extern __shared__ float4 smem4[];
  float* qs = reinterpret_cast<float*>(smem4);  // (BM, D + 4)
  float* kvs = qs + kBM * (D + 4);              // (BN, D + 4): K, then V
  float* ps = kvs + kBN * (D + 4);              // (BM, BN + 4)
  constexpr int NC = D / 64;                    // float4 output columns per thread
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const PrefillBlock<D> blk(kBM, heads, kv_heads, capacity, kc, vc);
  const int64_t m0 = blk.m0, b = blk.b, ld = blk.ld;
  const int h = blk.h;
  const float* kb = blk.kb;
  const float* vb = blk.vb;

  load_tile<D, kBM>(qs, q + b * t * ld + h * D, ld, m0, t);

  float o[4][NC][4] = {};
  float m[4], l[4];  // l: this thread's share of the row sum
#pragma unroll
  for (int r = 0; r < 4; ++r) m[r] = -INFINITY, l[r] = 0.0f;

  const int64_t n_end = pos0 + (m0 + kBM < t ? m0 + kBM : t);  // keys the tile's last row sees
  for (int64_t n0 = 0; n0 < n_end; n0 += kBN) {
    __syncthreads();  // the previous V tile is consumed
    load_tile<D, kBN>(kvs, kb, D, n0, n_end);
    __syncthreads();
    float s[4][4] = {};
#pragma unroll 4
    for (int d = 0; d < D; d += 4) {
      float4 qv[4], kv[4];
#pragma unroll
      for (int r = 0; r < 4; ++r)
        qv[r] = *reinterpret_cast<const float4*>(qs + (ty * 4 + r) * (D + 4) + d);
#pragma unroll
      for (int c = 0; c < 4; ++c)
        kv[c] = *reinterpret_cast<const float4*>(kvs + (tx + 16 * c) * (D + 4) + d);
#pragma unroll
      for (int r = 0; r < 4; ++r) {
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          float a = s[r][c];
          a = __fmaf_rn(qv[r].x, kv[c].x, a);
          a = __fmaf_rn(qv[r].y, kv[c].y, a);
          a = __fmaf_rn(qv[r].z, kv[c].z, a);
          a = __fmaf_rn(qv[r].w, kv[c].w, a);
          s[r][c] = a;
        }
      }
    }
    // Scale, causal mask, online softmax (row max over the 16 lanes that share the row).
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int64_t qpos = pos0 + m0 + ty * 4 + r;
      float mx = m[r];
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int64_t key = n0 + tx + 16 * c;
        s[r][c] = key <= qpos ? s[r][c] * scale : -INFINITY;
        mx = fmaxf(mx, s[r][c]);
      }
#pragma unroll
      for (int off = 8; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      const float corr = expf(m[r] - mx);  // 0 on the first tile
      m[r] = mx;
      float rs = 0.0f;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const float p = expf(s[r][c] - mx);
        ps[(ty * 4 + r) * (kBN + 4) + tx + 16 * c] = p;
        rs += p;
      }
      l[r] = l[r] * corr + rs;
#pragma unroll
      for (int c = 0; c < NC; ++c) {
#pragma unroll
        for (int e = 0; e < 4; ++e) o[r][c][e] *= corr;
      }
    }
    __syncthreads();  // K consumed, P written
    load_tile<D, kBN>(kvs, vb, D, n0, n_end);
    __syncthreads();
#pragma unroll 2
    for (int k = 0; k < kBN; k += 4) {
      float4 pv[4];
#pragma unroll
      for (int r = 0; r < 4; ++r)
        pv[r] = *reinterpret_cast<const float4*>(ps + (ty * 4 + r) * (kBN + 4) + k);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
        for (int c = 0; c < NC; ++c) {
          const float4 v =
              *reinterpret_cast<const float4*>(kvs + (k + kk) * (D + 4) + 64 * c + 4 * tx);
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            const float p = kk == 0 ? pv[r].x : kk == 1 ? pv[r].y : kk == 2 ? pv[r].z : pv[r].w;
            o[r][c][0] = __fmaf_rn(p, v.x, o[r][c][0]);
            o[r][c][1] = __fmaf_rn(p, v.y, o[r][c][1]);
            o[r][c][2] = __fmaf_rn(p, v.z, o[r][c][2]);
            o[r][c][3] = __fmaf_rn(p, v.w, o[r][c][3]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    float sum = l[r];
#pragma unroll
    for (int off = 8; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    const int64_t row = m0 + ty * 4 + r;
    if (row >= t) continue;
    float* dst = out + (b * t + row) * ld + h * D;
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      *reinterpret_cast<float4*>(dst + 64 * c + 4 * tx) =
          make_float4(o[r][c][0] / sum, o[r][c][1] / sum, o[r][c][2] / sum, o[r][c][3] / sum);
    }
  }
}

// ---- Prefill on tensor cores: one block = one (sequence, head, tile of 64 query rows), four
// warps of 16 rows; key tiles of 64 rows, K and V each in their own buffer so that V's copy
// overlaps the scores and the next K's copy overlaps P.V (cp.async). Every product is split into
// three: each operand x = hi + lo, and a product is lo.hi + hi.lo + hi.hi into FP32 accumulators.
// The dropped lo.lo term and lo's own rounding are about 2^-21 of it, so scores and P.V stay
// float32-grade (the CPU reference is float32). Two forms of the split:
// - FP16 halves on mma.sync m16n8k16 (the default): half the MMA instructions and tensor-pipe
//   cycles per FLOP of TF32 (docs/RESULTS.md, issue 6, session 16). FP16's range is small:
//   an operand (q, k or v, per sequence and kv head) whose largest magnitude, from
//   attn_range_kernel, lies outside [2^-4, 2^15) is scaled in shared memory by the power of two
//   that puts it in [2^14, 2^15): nothing overflows, and every value within 2^-17 of that maximum
//   keeps a normal FP16 lo, hence a relative error. Power-of-two scales are exact and come back
//   out exactly (scores before the softmax, outputs at the end), so the results are those of an
//   FP16 without range limits. P lies in [0, 1] with a row maximum of 1 and needs no scale.
// - TF32 halves on m16n8k8: float32's range, no scales (SHARQ_CUDA_ATTN_PREFILL=tf32, A/B).
// Q and K rows are FP16's float2 stride D + 8, V's D + 4: conflict-free for the FP16 form's
// fragment loads (the TF32 form's Q/K loads are 2-way there). ----
constexpr int kTcBM = 64, kTcBN = 64, kTcThreads = 128;

// Row strides in elements: Q is float32 (LQ); K and V are the cache's element (LK, LV). A float
// cache: K at Q's stride, V at D + 4. An FP16 cache: K and V rows of D + 8 halves, so that the
// 32-bit fragment loads (K: a lane's pair of columns; V: one half from each of two rows) fall in
// distinct banks.
template <int D, typename KV = float>
struct TcLayout {
  static constexpr bool kHalf = std::is_same_v<KV, __half>;
  static constexpr int LQ = D + 8, LK = D + 8, LV = kHalf ? D + 8 : D + 4;
  static constexpr size_t smem_bytes =
      sizeof(float) * size_t{kTcBM} * LQ + sizeof(KV) * size_t{kTcBN} * (LK + LV);
};

// The range pass: block (x, y) takes sequence y / kv_heads, kv head y % kv_heads and writes the
// largest |q| (the rows of the heads reading that kv head), |k| and |v| (cache rows 0 .. pos0 +
// t) over its share to partials[(y * kRangeBlocks + x) * 3 + {0, 1, 2}]. No atomics, no memset:
// the attention's blocks reduce the kRangeBlocks partials of their own (sequence, kv head).
constexpr int kRangeBlocks = 32, kRangeThreads = 256;

__device__ __forceinline__ float max_abs4(float m, float4 v) {
  return fmaxf(fmaxf(m, fmaxf(fabsf(v.x), fabsf(v.y))), fmaxf(fabsf(v.z), fabsf(v.w)));
}

// An FP16 cache's K and V are FP16 values already (the products read them as they are): their
// partials are 0 (no scale) and only q is read.
template <int D, typename KV>
__global__ void __launch_bounds__(kRangeThreads)
    attn_range_kernel(const float* __restrict__ q, int64_t t, int64_t pos0, int heads, int kv_heads,
                      int64_t capacity, const KV* __restrict__ kc, const KV* __restrict__ vc,
                      float* __restrict__ partials, const int64_t* pos_dev) {
  pdl_entry();
  const int y = static_cast<int>(blockIdx.y);
  const int64_t b = y / kv_heads, kvh = y % kv_heads, group = heads / kv_heads;
  const int64_t stride = int64_t{kRangeBlocks} * kRangeThreads;
  const int64_t first = int64_t{blockIdx.x} * kRangeThreads + threadIdx.x;
  float mk = 0.0f, mv = 0.0f, mq = 0.0f;
  if constexpr (std::is_same_v<KV, float>) {
    if (pos_dev) pos0 = *pos_dev;
    // K and V rows 0 .. pos0 + t of this (sequence, kv head): contiguous.
    const int64_t kv4 = (pos0 + t) * D / 4;
    const auto* k4 = reinterpret_cast<const float4*>(kc + (b * kv_heads + kvh) * capacity * D);
    const auto* v4 = reinterpret_cast<const float4*>(vc + (b * kv_heads + kvh) * capacity * D);
    for (int64_t i = first; i < kv4; i += stride) {
      mk = max_abs4(mk, __ldg(k4 + i));
      mv = max_abs4(mv, __ldg(v4 + i));
    }
  }
  // q: each of the t rows holds this kv head's group of heads as group * D contiguous floats.
  const int64_t row4 = group * D / 4, ld4 = int64_t{heads} * D / 4;
  const auto* q4 = reinterpret_cast<const float4*>(q + b * t * heads * D + kvh * group * D);
  for (int64_t i = first; i < t * row4; i += stride)
    mq = max_abs4(mq, __ldg(q4 + (i / row4) * ld4 + i % row4));
  __shared__ float red[3][kRangeThreads / 32];
  for (int off = 16; off > 0; off >>= 1) {
    mq = fmaxf(mq, __shfl_xor_sync(0xffffffffu, mq, off));
    mk = fmaxf(mk, __shfl_xor_sync(0xffffffffu, mk, off));
    mv = fmaxf(mv, __shfl_xor_sync(0xffffffffu, mv, off));
  }
  const int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0) red[0][warp] = mq, red[1][warp] = mk, red[2][warp] = mv;
  __syncthreads();
  if (threadIdx.x < 3) {
    float m = 0.0f;
    for (int w = 0; w < kRangeThreads / 32; ++w) m = fmaxf(m, red[threadIdx.x][w]);
    partials[(int64_t{y} * kRangeBlocks + blockIdx.x) * 3 + threadIdx.x] = m;
  }
}

// 2^e as a float, e in [-126, 127].
__device__ __forceinline__ float exp2i(int e) {
  return __uint_as_float(static_cast<uint32_t>(e + 127) << 23);
}
// The power-of-two exponent for an operand whose largest magnitude is m: 0 (no scaling) for m in
// [2^-4, 2^15), where nothing overflows and a value whose lo is an FP16 subnormal errs by at most
// 2^-25 absolute, 2^-21 of m; otherwise the one that puts m in [2^14, 2^15). 0 too for m zero,
// subnormal or not finite (nothing to scale, or the result is not finite anyway). Clamped to +-60
// so that every scale and its inverse, and their products with the softmax scale, are normal.
__device__ __forceinline__ int fp16_exponent(float m) {
  const int e = static_cast<int>((__float_as_uint(m) >> 23) & 0xff);
  if (e == 0 || e == 0xff || (e >= 127 - 4 && e < 127 + 15)) return 0;
  return min(60, max(-60, 14 - (e - 127)));
}

// Multiplies rows [0, R) of a shared tile (R, LD; D columns) by s, in place: the FP16 form's
// scaling, done once a tile where the fragments would do it once a warp. Barrier after.
template <int D, int R, int LD>
__device__ __forceinline__ void scale_tile(float* smem, float s) {
  constexpr int kV = D / 4;
  for (int x = threadIdx.x; x < R * kV; x += kTcThreads) {
    float4* p = reinterpret_cast<float4*>(smem + (x / kV) * LD + 4 * (x % kV));
    float4 v = *p;
    v.x *= s;
    v.y *= s;
    v.z *= s;
    v.w *= s;
    *p = v;
  }
  __syncthreads();
}

// hi: x rounded to TF32 (10 mantissa bits, ties away from zero) on its bits, two integer
// operations where cvt.rna.tf32.f32 takes four (guards for NaN and infinity, which the scores
// and values here are not; SASS of the first version: the splits were 3/4 of the instructions).
// lo = x - hi is exact in float32, |lo| <= 2^-11 |x|; the MMA reads lo's top 10 mantissa bits, so
// hi + lo carries x to about 2^-21.
__device__ __forceinline__ void split_tf32(float x, uint32_t& hi, uint32_t& lo) {
  hi = (__float_as_uint(x) + 0x1000u) & 0xffffe000u;
  lo = __float_as_uint(x - __uint_as_float(hi));
}
// (x0, x1) = hi + lo, each an FP16 pair (x0 in the low half); x - hi is exact in float32.
__device__ __forceinline__ void split_f16x2(float x0, float x1, uint32_t& hi, uint32_t& lo) {
  const __half2 h = __floats2half2_rn(x0, x1);
  const float2 f = __half22float2(h);
  const __half2 l = __floats2half2_rn(x0 - f.x, x1 - f.y);
  hi = *reinterpret_cast<const uint32_t*>(&h);
  lo = *reinterpret_cast<const uint32_t*>(&l);
}
template <bool F16>
__device__ __forceinline__ void mma_tc(float (&c)[4], const uint32_t (&a)[4],
                                       const uint32_t (&b)[2]) {
  if constexpr (F16) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}
// c += a . b, the small terms first.
template <bool F16>
__device__ __forceinline__ void mma_split3(float (&c)[4], const uint32_t (&ahi)[4],
                                           const uint32_t (&alo)[4], const uint32_t (&bhi)[2],
                                           const uint32_t (&blo)[2]) {
  mma_tc<F16>(c, alo, bhi);
  mma_tc<F16>(c, ahi, blo);
  mma_tc<F16>(c, ahi, bhi);
}
// c += a . b for an FP16 b (an FP16 cache's K or V: its lo is zero), the small term first.
__device__ __forceinline__ void mma_split2(float (&c)[4], const uint32_t (&ahi)[4],
                                           const uint32_t (&alo)[4], const uint32_t (&b)[2]) {
  mma_tc<true>(c, alo, b);
  mma_tc<true>(c, ahi, b);
}

// Starts copying rows [r0, r0 + R) of a (rows, ld) matrix of T (float or __half) into smem (R,
// LD); rows >= r_end are zero-filled.
template <int D, int R, int LD, typename T>
__device__ __forceinline__ void copy_tile_async(T* smem, const T* src, int64_t ld, int64_t r0,
                                                int64_t r_end) {
  constexpr int kE = 16 / static_cast<int>(sizeof(T));  // elements a 16-byte copy
  constexpr int kV = D / kE;
  for (int x = threadIdx.x; x < R * kV; x += kTcThreads) {
    const int r = x / kV, c = x % kV;
    const bool in = r0 + r < r_end;
    cp_async16(smem_u32(smem + r * LD + kE * c), in ? src + (r0 + r) * ld + kE * c : src,
               in ? 16 : 0);
  }
}

// What a prefill block works on, and its shared-memory tiles.
template <int D, typename KV = float>
struct TcBlock {
  PrefillBlock<D, KV> blk;
  const float* qg;  // the block's first query row
  int64_t t, n_end;
  float* qs;  // (BM, LQ)
  KV* ks;     // (BN, LK)
  KV* vs;     // (BN, LV)
  int qr, g, tg;
  int64_t qpos[2];
  float sq, sk, sv;  // the FP16 form's power-of-two scales of q, k and v (1 in the TF32 form)
  bool scaled;       // any of them is not 1: the tiles are scaled in shared memory
};

// Q's m16n8k16 A fragment (rows r, r + 8 at stride ld; columns c, c + 1 and c + 8, c + 9) from
// shared float32 at qa = &Q[r][c], split into FP16 hi + lo.
__device__ __forceinline__ void q_fragment_f16(const float* qa, int ld, uint32_t (&ahi)[4],
                                               uint32_t (&alo)[4]) {
  const float2 q0 = *reinterpret_cast<const float2*>(qa);
  const float2 q1 = *reinterpret_cast<const float2*>(qa + 8 * ld);
  const float2 q2 = *reinterpret_cast<const float2*>(qa + 8);
  const float2 q3 = *reinterpret_cast<const float2*>(qa + 8 * ld + 8);
  split_f16x2(q0.x, q0.y, ahi[0], alo[0]);
  split_f16x2(q1.x, q1.y, ahi[1], alo[1]);
  split_f16x2(q2.x, q2.y, ahi[2], alo[2]);
  split_f16x2(q3.x, q3.y, ahi[3], alo[3]);
}

// S (16 x 64 a warp) = Q . K^T for one key tile; element e of n-tile nt: row qr + 8 (e / 2), key
// n0 + 8 nt + 2 tg + e % 2.
template <int D, bool F16, typename KV>
__device__ __forceinline__ void tile_scores(const TcBlock<D, KV>& k, float (&s)[kTcBN / 8][4]) {
  constexpr int LQ = TcLayout<D, KV>::LQ, LK = TcLayout<D, KV>::LK, KT = kTcBN / 8;
  if constexpr (F16) {
    // m16n8k16: A rows g, g + 8, columns 2 tg, 2 tg + 1 and those + 8; B column g, the same rows.
    // An FP16 cache's K is its B fragment as cached (two 32-bit loads of pairs; only q is split).
#pragma unroll 2
    for (int kk = 0; kk < D; kk += 16) {
      uint32_t ahi[4], alo[4];
      q_fragment_f16(k.qs + k.qr * LQ + kk + 2 * k.tg, LQ, ahi, alo);
#pragma unroll
      for (int nt = 0; nt < KT; ++nt) {
        if constexpr (TcLayout<D, KV>::kHalf) {
          const __half* kp = k.ks + (8 * nt + k.g) * LK + kk + 2 * k.tg;
          const uint32_t b[2] = {*reinterpret_cast<const uint32_t*>(kp),
                                 *reinterpret_cast<const uint32_t*>(kp + 8)};
          mma_split2(s[nt], ahi, alo, b);
        } else {
          const float* kp = k.ks + (8 * nt + k.g) * LQ + kk + 2 * k.tg;
          const float2 k0 = *reinterpret_cast<const float2*>(kp);
          const float2 k1 = *reinterpret_cast<const float2*>(kp + 8);
          uint32_t bhi[2], blo[2];
          split_f16x2(k0.x, k0.y, bhi[0], blo[0]);
          split_f16x2(k1.x, k1.y, bhi[1], blo[1]);
          mma_split3<true>(s[nt], ahi, alo, bhi, blo);
        }
      }
    }
  } else {
#pragma unroll 2
    for (int kk = 0; kk < D; kk += 8) {
      uint32_t ahi[4], alo[4];
      const float* qa = k.qs + k.qr * LQ + kk + k.tg;
      split_tf32(qa[0], ahi[0], alo[0]);
      split_tf32(qa[8 * LQ], ahi[1], alo[1]);
      split_tf32(qa[4], ahi[2], alo[2]);
      split_tf32(qa[8 * LQ + 4], ahi[3], alo[3]);
#pragma unroll
      for (int nt = 0; nt < KT; ++nt) {
        const float* kp = k.ks + (8 * nt + k.g) * LQ + kk + k.tg;
        uint32_t bhi[2], blo[2];
        split_tf32(kp[0], bhi[0], blo[0]);
        split_tf32(kp[4], bhi[1], blo[1]);
        mma_split3<false>(s[nt], ahi, alo, bhi, blo);
      }
    }
  }
}

// O += P . V for one key tile, P the softmaxed scores in their accumulator layout.
template <int D, bool F16, typename KV>
__device__ __forceinline__ void tile_pv(const TcBlock<D, KV>& k, const float (&s)[kTcBN / 8][4],
                                        float (&o)[D / 8][4]) {
  constexpr int LV = TcLayout<D, KV>::LV, NT = D / 8, KT = kTcBN / 8;
  if constexpr (F16) {
    // The scores of n-tiles 2 j and 2 j + 1 are P's m16n8k16 A fragment for keys 16 j .. 16 j +
    // 15 as they stand; V's B fragment is rows 16 j + 2 tg, + 1, + 8, + 9 of column g (an FP16
    // cache's as cached, two halves a register).
#pragma unroll
    for (int j = 0; j < KT / 2; ++j) {
      uint32_t ahi[4], alo[4];
      split_f16x2(s[2 * j][0], s[2 * j][1], ahi[0], alo[0]);
      split_f16x2(s[2 * j][2], s[2 * j][3], ahi[1], alo[1]);
      split_f16x2(s[2 * j + 1][0], s[2 * j + 1][1], ahi[2], alo[2]);
      split_f16x2(s[2 * j + 1][2], s[2 * j + 1][3], ahi[3], alo[3]);
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        if constexpr (TcLayout<D, KV>::kHalf) {
          const auto* vp = reinterpret_cast<const uint16_t*>(k.vs) + (16 * j + 2 * k.tg) * LV + k.g;
          const uint32_t b[2] = {
              vp[8 * nt] | (static_cast<uint32_t>(vp[LV + 8 * nt]) << 16),
              vp[8 * LV + 8 * nt] | (static_cast<uint32_t>(vp[9 * LV + 8 * nt]) << 16)};
          mma_split2(o[nt], ahi, alo, b);
        } else {
          const float* vp = k.vs + (16 * j + 2 * k.tg) * LV + k.g;
          uint32_t bhi[2], blo[2];
          split_f16x2(vp[8 * nt], vp[LV + 8 * nt], bhi[0], blo[0]);
          split_f16x2(vp[8 * LV + 8 * nt], vp[9 * LV + 8 * nt], bhi[1], blo[1]);
          mma_split3<true>(o[nt], ahi, alo, bhi, blo);
        }
      }
    }
  } else {
    // The keys of each 8-step in the order 0,2,4,6,1,3,5,7: then P's m16n8k8 A fragment is the
    // lane's own accumulators (a0, a1, a2, a3 = c0, c2, c1, c3) and V's B fragment is rows 2 tg
    // and 2 tg + 1.
#pragma unroll
    for (int kt = 0; kt < KT; ++kt) {
      uint32_t ahi[4], alo[4];
      split_tf32(s[kt][0], ahi[0], alo[0]);
      split_tf32(s[kt][2], ahi[1], alo[1]);
      split_tf32(s[kt][1], ahi[2], alo[2]);
      split_tf32(s[kt][3], ahi[3], alo[3]);
      const float* vp = k.vs + (8 * kt + 2 * k.tg) * LV + k.g;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        uint32_t bhi[2], blo[2];
        split_tf32(vp[8 * nt], bhi[0], blo[0]);
        split_tf32(vp[LV + 8 * nt], bhi[1], blo[1]);
        mma_split3<false>(o[nt], ahi, alo, bhi, blo);
      }
    }
  }
}

// The flash loop over the block's key tiles: o (unnormalised) and l (this lane's share of each
// row's sum). Leaves the shared tiles free (ends on a barrier).
// scale: the scores' factor, the softmax scale times q's and k's inverse scales (powers of two
// with exponents within +-60 each, so the product is exact and normal, and so is the score:
// the unscaled one's).
template <int D, bool F16, typename KV>
__device__ __forceinline__ void prefill_tc_rows(const TcBlock<D, KV>& k, float scale,
                                                float (&o)[D / 8][4], float (&l)[2]) {
  using Layout = TcLayout<D, KV>;
  constexpr int LQ = Layout::LQ, LK = Layout::LK, LV = Layout::LV, NT = D / 8, BN = kTcBN;
  constexpr int KT = BN / 8;
  copy_tile_async<D, kTcBM, LQ>(k.qs, k.qg, k.blk.ld, k.blk.m0, k.t);
  copy_tile_async<D, BN, LK>(k.ks, k.blk.kb, D, 0, k.n_end);
  cp_async_commit();
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY};
  l[0] = l[1] = 0.0f;
  for (int64_t n0 = 0; n0 < k.n_end; n0 += BN) {
    copy_tile_async<D, BN, LV>(k.vs, k.blk.vb, D, n0, k.n_end);
    cp_async_commit();
    cp_async_wait<1>();  // Q and this K tile
    __syncthreads();
    if (F16 && k.scaled) {  // an FP16 cache's K and V are never scaled (sk = sv = 1)
      if (n0 == 0) scale_tile<D, kTcBM, LQ>(k.qs, k.sq);
      if constexpr (!Layout::kHalf) scale_tile<D, BN, LK>(k.ks, k.sk);
    }
    float s[KT][4] = {};
    tile_scores<D, F16>(k, s);
    // Scale, causal mask, online softmax; a row's 64 scores lie in the 4 lanes sharing g.
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int nt = 0; nt < KT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = n0 + 8 * nt + 2 * k.tg + (e & 1);
        s[nt][e] = key <= k.qpos[e >> 1] ? s[nt][e] * scale : -INFINITY;
        mx[e >> 1] = fmaxf(mx[e >> 1], s[nt][e]);
      }
    }
    float corr[2], rs[2] = {0.0f, 0.0f};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      corr[r] = expf(m[r] - mx[r]);  // 0 on the first tile (key 0 is never masked)
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
    __syncthreads();  // every warp is done with K
    if (n0 + BN < k.n_end) copy_tile_async<D, BN, LK>(k.ks, k.blk.kb, D, n0 + BN, k.n_end);
    cp_async_commit();   // possibly empty: keeps the group count uniform
    cp_async_wait<1>();  // V
    __syncthreads();
    if constexpr (!Layout::kHalf) {
      if (F16 && k.scaled) scale_tile<D, BN, LV>(k.vs, k.sv);
    }
    tile_pv<D, F16>(k, s, o);
    __syncthreads();  // every warp is done with V
  }
}

// KV = __half (an FP16 cache) only with F16: K and V enter the products as cached (two products
// each, q's and P's halves against them), never scaled; q is scaled as for a float cache.
template <int D, bool F16, typename KV>
__global__ void __launch_bounds__(kTcThreads, 2)
    attn_prefill_tc_kernel(const float* __restrict__ q, int64_t t, int64_t pos0, int heads,
                           int kv_heads, int64_t capacity, const KV* __restrict__ kc,
                           const KV* __restrict__ vc, float scale, float* __restrict__ out,
                           const int64_t* pos_dev, const float* __restrict__ range) {
  static_assert(F16 || std::is_same_v<KV, float>, "the TF32 form reads a float cache");
  pdl_entry();
  if (pos_dev) pos0 = *pos_dev;
  constexpr int NT = D / 8;
  extern __shared__ float4 smem4[];
  TcBlock<D, KV> k{.blk = PrefillBlock<D, KV>(kTcBM, heads, kv_heads, capacity, kc, vc)};
  const PrefillBlock<D, KV>& blk = k.blk;
  const int lane = threadIdx.x % 32;
  k.g = lane / 4;
  k.tg = lane % 4;
  k.qr = (threadIdx.x / 32) * 16 + k.g;  // this lane's rows: qr and qr + 8 of the tile
  k.t = t;
  k.qg = q + blk.b * t * blk.ld + blk.h * D;
  k.n_end = pos0 + (blk.m0 + kTcBM < t ? blk.m0 + kTcBM : t);  // keys the last row sees
  k.qpos[0] = pos0 + blk.m0 + k.qr;
  k.qpos[1] = k.qpos[0] + 8;
  k.qs = reinterpret_cast<float*>(smem4);
  k.ks = reinterpret_cast<KV*>(k.qs + kTcBM * TcLayout<D, KV>::LQ);
  k.vs = k.ks + kTcBN * TcLayout<D, KV>::LK;

  float o[NT][4], l[2], unscale_v = 1.0f;
  if constexpr (F16) {
    // Each warp reduces its (sequence, kv head)'s range partials: lane i holds partial i.
    static_assert(kRangeBlocks == 32, "one partial a lane");
    const int64_t y = blk.b * kv_heads + blk.h / (heads / kv_heads);
    const float* p = range + (y * kRangeBlocks + lane) * 3;
    float mq = p[0], mk = p[1], mv = p[2];
    for (int off = 16; off > 0; off >>= 1) {
      mq = fmaxf(mq, __shfl_xor_sync(0xffffffffu, mq, off));
      mk = fmaxf(mk, __shfl_xor_sync(0xffffffffu, mk, off));
      mv = fmaxf(mv, __shfl_xor_sync(0xffffffffu, mv, off));
    }
    const int eq = fp16_exponent(mq), ek = fp16_exponent(mk), ev = fp16_exponent(mv);
    k.sq = exp2i(eq);
    k.sk = exp2i(ek);
    k.sv = exp2i(ev);
    k.scaled = (eq | ek | ev) != 0;
    unscale_v = exp2i(-ev);
    prefill_tc_rows<D, true>(k, scale * exp2i(-eq) * exp2i(-ek), o, l);
  } else {
    k.sq = k.sk = k.sv = 1.0f;
    k.scaled = false;
    prefill_tc_rows<D, false>(k, scale, o, l);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = l[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const int64_t row = blk.m0 + k.qr + 8 * r;
    if (row >= t) continue;
    float* dst = out + (blk.b * t + row) * blk.ld + blk.h * D + 2 * k.tg;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      *reinterpret_cast<float2*>(dst + 8 * nt) =
          make_float2(o[nt][2 * r] / sum * unscale_v, o[nt][2 * r + 1] / sum * unscale_v);
    }
  }
}

// ---- Decode over an FP16 cache on tensor cores (session 24). The CUDA-core kernel above is
// bound by its instructions (every key's softmax update is computed by all 16 lanes of its row;
// FP16 rows at twice the in-flight rows, through registers or a cp.async ring, stayed at
// 22.5 / 61 us a layer at batch 8 / 32). Here a block is the same (query row, kv head, chunk of
// QH <= 8 query heads, key range), and each warp walks 16-key tiles of the range (warp w: tiles
// w, w + 4, ...) through its own two-slot cp.async ring:
//   S (16 x 16) = Q (heads in rows 0..7, rows 8..15 zero) . K^T, m16n8k16, q split into FP16
//     hi + lo (scaled by the power of two that puts the block's largest |q| in FP16's range), K
//     as cached: two MMAs a product, float32-grade as the prefill's;
//   the online softmax of head fr = lane / 4 over the lane's 4 keys and its 4-lane row;
//   O^T (D x 8 heads) += V^T . P: V^T's A fragments by ldmatrix.trans, P's B fragment is the
//     scores' accumulator rows as they stand, split hi + lo.
// The warps' partials merge as the CUDA-core kernel's do (store_merged). ----
constexpr int kTcDecodeStages = 2;
constexpr int kTcDecodeKeys = 16;  // keys a tile

template <int D>
struct TcDecodeLayout {
  static constexpr int LD = D + 8;  // halves a K/V row in shared memory: ldmatrix conflict-free
  static constexpr int stage_halves = 2 * kTcDecodeKeys * LD;  // K rows, then V rows
  static constexpr size_t ring_bytes =
      sizeof(__half) * size_t{stage_halves} * kTcDecodeStages * kDecodeWarps;
  static constexpr size_t merge_bytes = sizeof(float) * kDecodeWarps * 8 * (D + 2);
  static constexpr size_t smem_bytes = ring_bytes > merge_bytes ? ring_bytes : merge_bytes;
};

template <int D, int QH>
__global__ void __launch_bounds__(kDecodeThreads)
    attn_decode_tc_kernel(const float* __restrict__ q, int64_t t, int64_t pos0, int heads,
                          int kv_heads, int chunks, int64_t capacity, const __half* __restrict__ kc,
                          const __half* __restrict__ vc, float scale, int64_t per_split, int splits,
                          float* __restrict__ out, float* __restrict__ ws_o,
                          float2* __restrict__ ws_ml, const int64_t* pos_dev) {
  static_assert(QH <= 8, "the heads are one 8-column n-tile");
  using Layout = TcDecodeLayout<D>;
  constexpr int LD = Layout::LD, KT = kTcDecodeKeys, KS = D / 16, S = kTcDecodeStages;
  if (pos_dev) pos0 = *pos_dev;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int fr = lane >> 2, tg = lane & 3, mi = lane >> 3;  // fragment row, column pair, matrix
  const DecodeBlock<D, QH, __half> blk(t, pos0, heads, kv_heads, chunks, capacity, kc, vc,
                                       per_split);
  prefetch_first_keys<D>(blk.kb, blk.vb, blk.k0, blk.k1);
  pdl_entry();

  // This lane's q elements (head fr; A-fragment columns 2 tg, 2 tg + 1 and those + 8 of each
  // 16-wide k-step), the block's largest |q| over every lane, then scaled and split.
  float2 qv[KS][2];
  float qmax = 0.0f;
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      qv[kk][h] = fr < blk.nh
                      ? *reinterpret_cast<const float2*>(q + (blk.row * heads + blk.h0 + fr) * D +
                                                         16 * kk + 8 * h + 2 * tg)
                      : make_float2(0.0f, 0.0f);
      qmax = fmaxf(qmax, fmaxf(fabsf(qv[kk][h].x), fabsf(qv[kk][h].y)));
    }
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1)
    qmax = fmaxf(qmax, __shfl_xor_sync(0xffffffffu, qmax, off));
  const int eq = fp16_exponent(qmax);
  const float sq = exp2i(eq), sscale = scale * exp2i(-eq);
  uint32_t qhi[KS][2], qlo[KS][2];
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      split_f16x2(qv[kk][h].x * sq, qv[kk][h].y * sq, qhi[kk][h], qlo[kk][h]);
    }
  }

  extern __shared__ float4 smem4[];
  __half* ring = reinterpret_cast<__half*>(smem4) + warp * S * Layout::stage_halves;
  const int64_t ntiles = blk.k1 > blk.k0 ? (blk.k1 - blk.k0 + KT - 1) / KT : 0;
  // Starts copying tile `tile` of the range into `slot` (rows past k1 zero); always commits, so
  // the group count stays uniform. K and V rows in one loop, not two copy_tile_async calls over a
  // warp's lanes: that form took more registers (155 -> 161 at head_dim 128) and 10% more static
  // instructions, and ran batch 8 4% slower (H200, session 25).
  auto issue = [&](int64_t tile, int slot) {
    if (tile < ntiles) {
      __half* st = ring + slot * Layout::stage_halves;
      const int64_t key0 = blk.k0 + tile * KT;
      constexpr int kChunks = D / 8;  // 16-byte copies a row
      for (int c = lane; c < 2 * KT * kChunks; c += 32) {
        const int kv = c / (KT * kChunks), r = (c / kChunks) % KT, col = c % kChunks;
        const int64_t key = key0 + r;
        const bool in = key < blk.k1;
        const __half* src = (kv ? blk.vb : blk.kb) + (in ? key : key0) * D + 8 * col;
        cp_async16(smem_u32(st + (kv * KT + r) * LD + 8 * col), src, in ? 16 : 0);
      }
    }
    cp_async_commit();
  };

  float o[KS][4];  // O^T m-tile mt: dims 16 mt + fr (+ 8) x heads 2 tg, 2 tg + 1
#pragma unroll
  for (int mt = 0; mt < KS; ++mt) o[mt][0] = o[mt][1] = o[mt][2] = o[mt][3] = 0.0f;
  float m = -INFINITY, l = 0.0f;  // head fr: running max; this lane's share of the sum
  const int64_t my_tiles = ntiles > warp ? (ntiles - warp + kDecodeWarps - 1) / kDecodeWarps : 0;
#pragma unroll
  for (int st = 0; st + 1 < S; ++st) issue(warp + int64_t{st} * kDecodeWarps, st);
  const uint32_t frag_off = static_cast<uint32_t>(((lane & 7) + 8 * (mi >> 1)) * LD + 8 * (mi & 1));
  for (int64_t it = 0; it < my_tiles; ++it) {
    const int slot = static_cast<int>(it % S);
    issue(warp + (it + S - 1) * kDecodeWarps, static_cast<int>((it + S - 1) % S));
    cp_async_wait<S - 1>();  // this tile's group
    __syncwarp();
    const __half* ks = ring + slot * Layout::stage_halves;
    const uint32_t ka = smem_u32(ks) + 2 * frag_off, va = ka + 2 * KT * LD;
    float sc[2][4] = {};
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
      uint32_t kf[4];  // n-tile 0's b0, b1, n-tile 1's b0, b1
      sm90::ldmatrix_x4(kf, ka + 2 * 16 * kk);
      const uint32_t ahi[4] = {qhi[kk][0], 0u, qhi[kk][1], 0u};
      const uint32_t alo[4] = {qlo[kk][0], 0u, qlo[kk][1], 0u};
      const uint32_t b0[2] = {kf[0], kf[1]}, b1[2] = {kf[2], kf[3]};
      mma_split2(sc[0], ahi, alo, b0);
      mma_split2(sc[1], ahi, alo, b1);
    }
    // Head fr's scores for keys 8 nt + 2 tg + e of the tile (accumulator rows fr + 8: padding).
    const int64_t key0 = blk.k0 + (warp + it * kDecodeWarps) * KT;
    float p[2][2], tmax = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        p[nt][e] = key0 + 8 * nt + 2 * tg + e < blk.k1 ? sc[nt][e] * sscale : -INFINITY;
        tmax = fmaxf(tmax, p[nt][e]);
      }
    }
    tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
    tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 2));
    const float mn = fmaxf(m, tmax);  // finite: the tile's first key is in the range
    const float corr = expf(m - mn);  // 0 on the first tile
    m = mn;
    float rs = 0.0f;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        p[nt][e] = expf(p[nt][e] - mn);
        rs += p[nt][e];
      }
    }
    l = __fmaf_rn(l, corr, rs);
    // O^T's columns 2 tg and 2 tg + 1 are heads whose rows lanes 8 tg and 8 tg + 4 hold.
    const float ca = __shfl_sync(0xffffffffu, corr, 8 * tg);
    const float cb = __shfl_sync(0xffffffffu, corr, 8 * tg + 4);
    uint32_t phi[2], plo[2];
    split_f16x2(p[0][0], p[0][1], phi[0], plo[0]);
    split_f16x2(p[1][0], p[1][1], phi[1], plo[1]);
#pragma unroll
    for (int mt = 0; mt < KS; ++mt) {
      o[mt][0] *= ca;
      o[mt][1] *= cb;
      o[mt][2] *= ca;
      o[mt][3] *= cb;
      uint32_t vf[4];  // V^T rows 16 mt .. + 15 (dims) x the tile's 16 keys
      sm90::ldmatrix_x4_trans(vf, va + 2 * 16 * mt);
      mma_tc<true>(o[mt], vf, plo);
      mma_tc<true>(o[mt], vf, phi);
    }
    __syncwarp();  // the slot is read before a later issue reuses it
  }
  cp_async_wait<0>();
  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);

  __syncthreads();  // every warp is done with its ring: the merge arrays overlay them
  float* sm_acc = reinterpret_cast<float*>(smem4);  // (warps, QH, D)
  float* sm_m = sm_acc + kDecodeWarps * QH * D;
  float* sm_l = sm_m + kDecodeWarps * QH;
#pragma unroll
  for (int mt = 0; mt < KS; ++mt) {
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const int j = 2 * tg + c;
      if (j < QH) {
        sm_acc[(warp * QH + j) * D + 16 * mt + fr] = o[mt][c];
        sm_acc[(warp * QH + j) * D + 16 * mt + fr + 8] = o[mt][2 + c];
      }
    }
  }
  if (tg == 0 && fr < QH) sm_m[warp * QH + fr] = m, sm_l[warp * QH + fr] = l;
  __syncthreads();
  store_merged<D, QH>(sm_acc, sm_m, sm_l, blk.nh, blk.row * heads + blk.h0, blk.s, splits, out,
                      ws_o, ws_ml);
}

void check_attention_shape(int64_t batch, int64_t t, int64_t pos0, int64_t heads, int64_t kv_heads,
                           int64_t head_dim, int64_t capacity) {
  if (head_dim != 64 && head_dim != 128) {
    throw Error("attention: head_dim " + std::to_string(head_dim) +
                " is not supported on CUDA (64 or 128)");
  }
  if (kv_heads <= 0 || heads % kv_heads != 0) {
    throw Error("attention: heads " + std::to_string(heads) + " is not a multiple of kv_heads " +
                std::to_string(kv_heads));
  }
  if (pos0 < 0 || pos0 + t > capacity) {
    throw Error("attention: positions up to " + std::to_string(pos0 + t) +
                " exceed the kv cache capacity " + std::to_string(capacity));
  }
  if (batch * t * heads > 0x7fffffff || heads > 65535 || batch > 65535) {
    throw Error("attention: batch " + std::to_string(batch) + " x t " + std::to_string(t) +
                " x heads " + std::to_string(heads) + " is too large");
  }
}

template <int D, int QH, typename KV>
void launch_decode(const DecodePlan& p, const float* q, int64_t batch, int64_t t, int64_t pos0,
                   int64_t heads, int64_t kv_heads, int64_t capacity, const KV* kc, const KV* vc,
                   float scale, float* out, float* ws_o, float2* ws_ml, cudaStream_t stream,
                   const int64_t* pos_dev, const TensorMaxSink* sink, const RopeIn* rope) {
  const dim3 grid(static_cast<unsigned>(p.splits), static_cast<unsigned>(kv_heads * p.chunks),
                  static_cast<unsigned>(batch * t));
  if constexpr (std::is_same_v<KV, __half>) {
    constexpr size_t smem = TcDecodeLayout<D>::smem_bytes;
    opt_in_smem<attn_decode_tc_kernel<D, QH>, smem>("attn_decode_tc_kernel smem");
    launch_pdl(attn_decode_tc_kernel<D, QH>, grid, dim3(kDecodeThreads), smem, stream,
               "attn_decode_tc_kernel", q, t, pos0, static_cast<int>(heads),
               static_cast<int>(kv_heads), p.chunks, capacity, kc, vc, scale, p.per_split,
               static_cast<int>(p.splits), out, ws_o, ws_ml, pos_dev);
  } else {
    launch_pdl(rope ? attn_decode_kernel<D, QH, true> : attn_decode_kernel<D, QH, false>, grid,
               dim3(kDecodeThreads), 0, stream, "attn_decode_kernel", q, t, pos0,
               static_cast<int>(heads), static_cast<int>(kv_heads), p.chunks, capacity, kc, vc,
               scale, p.per_split, static_cast<int>(p.splits), out, ws_o, ws_ml, pos_dev,
               rope ? *rope : RopeIn{});
  }
  if (p.splits > 1) {
    const TensorMaxSink none{};
    launch_pdl(sink ? attn_combine_kernel<D, true> : attn_combine_kernel<D, false>,
               dim3(static_cast<unsigned>(batch * t * heads)), dim3(D), 0, stream,
               "attn_combine_kernel", ws_o, ws_ml, static_cast<int>(p.splits), out,
               sink ? *sink : none);
  }
}

template <int D, typename KV>
void decode_dispatch(const DecodePlan& p, const float* q, int64_t batch, int64_t t, int64_t pos0,
                     int64_t heads, int64_t kv_heads, int64_t capacity, const KV* kc, const KV* vc,
                     float scale, float* out, float* ws_o, float2* ws_ml, cudaStream_t stream,
                     const int64_t* pos_dev, const TensorMaxSink* sink, const RopeIn* rope) {
  switch (p.qh) {
    case 1:
      return launch_decode<D, 1, KV>(p, q, batch, t, pos0, heads, kv_heads, capacity, kc, vc, scale,
                                     out, ws_o, ws_ml, stream, pos_dev, sink, rope);
    case 2:
      return launch_decode<D, 2, KV>(p, q, batch, t, pos0, heads, kv_heads, capacity, kc, vc, scale,
                                     out, ws_o, ws_ml, stream, pos_dev, sink, rope);
    case 4:
      return launch_decode<D, 4, KV>(p, q, batch, t, pos0, heads, kv_heads, capacity, kc, vc, scale,
                                     out, ws_o, ws_ml, stream, pos_dev, sink, rope);
    default:
      return launch_decode<D, 8, KV>(p, q, batch, t, pos0, heads, kv_heads, capacity, kc, vc, scale,
                                     out, ws_o, ws_ml, stream, pos_dev, sink, rope);
  }
}

using testing::PrefillKernel;

// SHARQ_CUDA_ATTN_PREFILL: fp32 (the CUDA-core kernel), tf32 (the tensor-core kernel in its TF32
// form), unset: the FP16 form. For A/B and the tests.
PrefillKernel& prefill_kernel() {
  static PrefillKernel k = [] {
    const char* e = std::getenv("SHARQ_CUDA_ATTN_PREFILL");
    const std::string v = e ? e : "";
    return v == "fp32"   ? PrefillKernel::kFp32Cores
           : v == "tf32" ? PrefillKernel::kTf32x3
                         : PrefillKernel::kF16x3;
  }();
  return k;
}

size_t prefill_range_bytes(int64_t batch, int64_t kv_heads) {
  return static_cast<size_t>(batch * kv_heads) * kRangeBlocks * 3 * sizeof(float);
}

template <int D, typename KV>
void launch_prefill(const float* q, int64_t batch, int64_t t, int64_t pos0, int64_t heads,
                    int64_t kv_heads, int64_t capacity, const KV* kc, const KV* vc, float scale,
                    float* out, void* workspace, size_t workspace_bytes, cudaStream_t stream,
                    const int64_t* pos_dev) {
  const int h = static_cast<int>(heads), kvh = static_cast<int>(kv_heads);
  if constexpr (std::is_same_v<KV, __half>) {
    if (prefill_kernel() != PrefillKernel::kF16x3) {
      throw Error(
          "attention: SHARQ_CUDA_ATTN_PREFILL=fp32|tf32 (an A/B knob) reads only the float32 KV "
          "cache; unset it or use --kv-cache f32");
    }
  } else if (prefill_kernel() == PrefillKernel::kFp32Cores) {
    constexpr size_t smem = prefill_smem_bytes<D>();
    opt_in_smem<attn_prefill_kernel<D>, smem>("attn_prefill_kernel smem");
    const dim3 grid(static_cast<unsigned>((t + kBM - 1) / kBM), static_cast<unsigned>(heads),
                    static_cast<unsigned>(batch));
    launch_pdl(attn_prefill_kernel<D>, grid, dim3(kPrefillThreads), smem, stream,
               "attn_prefill_kernel", q, t, pos0, h, kvh, capacity, kc, vc, scale, out, pos_dev);
    return;
  }
  float* range = nullptr;
  if (prefill_kernel() == PrefillKernel::kF16x3) {
    const size_t need = prefill_range_bytes(batch, kv_heads);
    if (workspace == nullptr || workspace_bytes < need) {
      throw Error("attention: workspace of " + std::to_string(workspace_bytes) +
                  " bytes is smaller than the " + std::to_string(need) + " the prefill needs");
    }
    range = static_cast<float*>(workspace);
    launch_pdl(attn_range_kernel<D, KV>,
               dim3(kRangeBlocks, static_cast<unsigned>(batch * kv_heads)), dim3(kRangeThreads), 0,
               stream, "attn_range_kernel", q, t, pos0, h, kvh, capacity, kc, vc, range, pos_dev);
  }
  constexpr size_t smem = TcLayout<D, KV>::smem_bytes;
  const dim3 grid(static_cast<unsigned>((t + kTcBM - 1) / kTcBM), static_cast<unsigned>(heads),
                  static_cast<unsigned>(batch));
  if (range) {
    opt_in_smem<attn_prefill_tc_kernel<D, true, KV>, smem>("attn_prefill_tc_kernel smem");
    launch_pdl(attn_prefill_tc_kernel<D, true, KV>, grid, dim3(kTcThreads), smem, stream,
               "attn_prefill_tc_kernel", q, t, pos0, h, kvh, capacity, kc, vc, scale, out, pos_dev,
               static_cast<const float*>(range));
  } else if constexpr (std::is_same_v<KV, float>) {
    opt_in_smem<attn_prefill_tc_kernel<D, false, KV>, smem>("attn_prefill_tc_kernel smem");
    launch_pdl(attn_prefill_tc_kernel<D, false, KV>, grid, dim3(kTcThreads), smem, stream,
               "attn_prefill_tc_kernel", q, t, pos0, h, kvh, capacity, kc, vc, scale, out, pos_dev,
               static_cast<const float*>(nullptr));
  }
}

// attention() for one cache element type.
// rope (t = 1, a float32 cache): rope_attention_decode's inputs.
template <typename KV>
bool run_attention(const float* q, int64_t batch, int64_t t, int64_t pos0, int64_t heads,
                   int64_t kv_heads, int64_t head_dim, int64_t capacity, const KV* k_cache,
                   const KV* v_cache, float* out, void* workspace, size_t workspace_bytes,
                   cudaStream_t stream, const int64_t* pos_dev, const TensorMaxSink* sink,
                   const RopeIn* rope = nullptr) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  if (t < kDecodeMaxT) {
    // Key ranges from the capacity (ranges past the position are empty): the same split whether
    // the position is pos0 or read from pos_dev in a replayed graph.
    const DecodePlan p =
        decode_plan(batch, t, heads, kv_heads, capacity, std::is_same_v<KV, __half>);
    float* ws_o = nullptr;
    float2* ws_ml = nullptr;
    if (p.splits > 1) {
      const size_t o_bytes =
          static_cast<size_t>(batch * t * heads * p.splits * head_dim) * sizeof(float);
      const size_t need =
          o_bytes + static_cast<size_t>(batch * t * heads * p.splits) * sizeof(float2);
      if (workspace == nullptr || workspace_bytes < need) {
        throw Error("attention: workspace of " + std::to_string(workspace_bytes) +
                    " bytes is smaller than the " + std::to_string(need) + " it needs");
      }
      ws_o = static_cast<float*>(workspace);
      ws_ml = reinterpret_cast<float2*>(static_cast<char*>(workspace) + o_bytes);
    }
    if (head_dim == 64) {
      decode_dispatch<64>(p, q, batch, t, pos0, heads, kv_heads, capacity, k_cache, v_cache, scale,
                          out, ws_o, ws_ml, stream, pos_dev, sink, rope);
    } else {
      decode_dispatch<128>(p, q, batch, t, pos0, heads, kv_heads, capacity, k_cache, v_cache, scale,
                           out, ws_o, ws_ml, stream, pos_dev, sink, rope);
    }
    return sink != nullptr && p.splits > 1;
  }
  if (head_dim == 64) {
    launch_prefill<64>(q, batch, t, pos0, heads, kv_heads, capacity, k_cache, v_cache, scale, out,
                       workspace, workspace_bytes, stream, pos_dev);
  } else {
    launch_prefill<128>(q, batch, t, pos0, heads, kv_heads, capacity, k_cache, v_cache, scale, out,
                        workspace, workspace_bytes, stream, pos_dev);
  }
  return false;
}

}  // namespace

namespace testing {
void attention_prefill_kernel(PrefillKernel k) {
  prefill_kernel() = k;
}
}  // namespace testing

size_t attention_workspace_bytes(int64_t batch, int64_t t, int64_t heads, int64_t kv_heads,
                                 int64_t head_dim, int64_t capacity) {
  if (t <= 0 || batch <= 0 || kv_heads <= 0 || heads % kv_heads != 0 || capacity <= 0) return 0;
  if (t >= kDecodeMaxT) return prefill_range_bytes(batch, kv_heads);  // the FP16 form's range pass
  // Either cache format's plan (the float32 and the FP16 kernels have their own occupancy).
  const int64_t bound =
      std::max(decode_plan(batch, t, heads, kv_heads, capacity).splits_bound,
               decode_plan(batch, t, heads, kv_heads, capacity, true).splits_bound);
  if (bound <= 1) return 0;
  return static_cast<size_t>(batch * t * heads * bound) *
         (static_cast<size_t>(head_dim) * sizeof(float) + sizeof(float2));
}

bool attention(const float* q, int64_t batch, int64_t t, int64_t pos0, int64_t heads,
               int64_t kv_heads, int64_t head_dim, int64_t capacity, const float* k_cache,
               const float* v_cache, float* out, void* workspace, size_t workspace_bytes,
               cudaStream_t stream, const int64_t* pos_dev, const TensorMaxSink* sink, KvCache kv) {
  check_attention_shape(batch, t, pos0, heads, kv_heads, head_dim, capacity);
  if (batch <= 0 || t <= 0 || heads <= 0) return false;
  if (kv == KvCache::kF16) {
    return run_attention(q, batch, t, pos0, heads, kv_heads, head_dim, capacity,
                         reinterpret_cast<const __half*>(k_cache),
                         reinterpret_cast<const __half*>(v_cache), out, workspace, workspace_bytes,
                         stream, pos_dev, sink);
  }
  return run_attention(q, batch, t, pos0, heads, kv_heads, head_dim, capacity, k_cache, v_cache,
                       out, workspace, workspace_bytes, stream, pos_dev, sink);
}

bool rope_attention_decode(const float* q, const float* k, const float* v, int64_t batch,
                           int64_t pos0, int64_t heads, int64_t kv_heads, int64_t head_dim,
                           const float2* cos_sin, int64_t capacity, float* k_cache, float* v_cache,
                           float* out, void* workspace, size_t workspace_bytes, cudaStream_t stream,
                           const int64_t* pos_dev, const TensorMaxSink* sink, KvCache kv,
                           bool* published) {
  if (kv != KvCache::kF32 || (head_dim != 64 && head_dim != 128)) return false;
  check_attention_shape(batch, 1, pos0, heads, kv_heads, head_dim, capacity);
  *published = false;
  if (batch <= 0 || heads <= 0) return true;
  const RopeIn rope{k, v, cos_sin, k_cache, v_cache};
  *published = run_attention(q, batch, 1, pos0, heads, kv_heads, head_dim, capacity,
                             static_cast<const float*>(k_cache), static_cast<const float*>(v_cache),
                             out, workspace, workspace_bytes, stream, pos_dev, sink, &rope);
  return true;
}

}  // namespace sharq::cuda
