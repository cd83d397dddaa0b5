// The warp-specialised prefill GEMM (sm_90a), one launch for the SharQ product
//   Y (m, n) = s_x s_w 2^14 [ A_sp . W~^T + sum_p R_p . W~^T ]
// with W~ the FP4 weight (tiled layout, g32) decoded once per tile to FP16 (E2M1 x UE4M3 x
// 2^-14, exact) in the producer warpgroup, A_sp the 2:4 backbone on sparse wgmma and R_p the dense
// paths, all into one FP32 accumulator. Activations arrive as stage images (prefill_ws_images).
// The library runs Cfg<1, 1, 0> (sharq-nvfp4-24); dev/cuda/sharq_prefill_ws_probe.cu times every
// variant. Layouts and measurements: docs/cuda_kernels.md, docs/RESULTS.md (issue 5, session 12).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "codecs.cuh"
#include "fp4_decode.cuh"
#include "mbarrier.cuh"
#include "sharq/cuda/weight_layout.h"
#include "wgmma_sp.cuh"

namespace sharq::cuda::prefill_ws {

using sm90::bulk_copy;
using sm90::fence_acc;
using sm90::fence_proxy_async;
using sm90::ldmatrix_x4;
using sm90::mbar_arrive;
using sm90::mbar_expect_tx;
using sm90::mbar_init;
using sm90::mbar_wait;
using sm90::smem_desc;
using sm90::su32;
using sm90::wgmma_commit;
using sm90::wgmma_fence;
using sm90::wgmma_m64n256k16_ss;
using sm90::wgmma_sp_m64n256k32;
using sm90::wgmma_wait;

constexpr int kBM = 128, kBN = 256, kBK = 64;
constexpr int kWdec = kBN * 128;
constexpr int kR = kBM * 128;  // one dense path's stage image
constexpr int kS = kBM * 64;   // backbone kept values
constexpr int kE = 1024;       // backbone metadata: 8 row blocks x 2 k32 x 16 words

// 128-row tiles of an M-row activation; its stage images per region (one per tile and 64-wide K
// step: the residual images first, then the backbone's kept values, then the metadata).
__host__ __device__ inline int64_t m_tiles(int64_t m) {
  return (m + kBM - 1) / kBM;
}
__host__ __device__ inline int64_t image_count(int64_t m, int64_t k) {
  return m_tiles(m) * (k / kBK);
}

// A kernel configuration: SP backbone on sparse MMA; DP dense paths; PERSIST one CTA an SM walking
// the tiles (the producer fills the next tile's stages during the epilogue); ABL bit 0 skips the
// decode (timing only). One producer warpgroup: with a second (512 threads, 128 registers each at
// launch) ptxas cannot compile the m64n256 accumulator (it needs 154).
template <int SP_, int DP_, int PERSIST_, int ABL_ = 0, int CD_ = 0>
struct Cfg {
  static constexpr int SP = SP_, DP = DP_, PERSIST = PERSIST_, ABL = ABL_, CD = CD_;
  static_assert(!(CD && PERSIST), "consumer decode walks one tile");
  static constexpr int kThreads = 384;
  static constexpr int kDecoders = CD ? 256 : 128;
  // Registers move from the producer to the consumers: at the launch's even split (168) the
  // accumulator and the backbone's A registers leave ptxas too few to keep wgmmas in flight.
  static constexpr int kProducerRegs = 88, kConsumerRegs = 208;
  static_assert(2 * kConsumerRegs + kProducerRegs <= 3 * 168, "register file");
  static constexpr int kAct = DP * kR + SP * (kS + kE);  // bytes the bulk copies bring
  static constexpr int kBytes = (kWdec + kAct + 1023) / 1024 * 1024;
  static constexpr int kStages = (227 * 1024 - 1024) / kBytes;
  static constexpr int kSmem = kStages * kBytes + 1024;
  // Consumer decode: stage ks + kLead is decoded while step ks's MMAs run; its slot was last
  // read by step ks + kLead - kStages, which must be two steps back (step ks - 1's release comes
  // after the decode).
  static constexpr int kLead = kStages - 2;
};

struct Params {
  const uint8_t* codes;   // tiled layout
  const uint8_t* scales;  // tiled layout, g32
  const uint8_t* rimg;    // (m_tiles, nk, rpaths) dense path stage images
  const uint8_t* simg;    // (m_tiles, nk) backbone kept values
  const uint8_t* eimg;    // (m_tiles, nk) backbone metadata
  void* c;                // (m, n) float or bf16
  int m, n, k;
  int rpaths;       // dense paths per stage image (the kernel reads the first DP)
  const float* sx;  // s_x and s_w (device floats), or null for 1
  const float* sw;
  int accumulate;  // float output: c += the product (one float add)
};

// One producer thread's weight rows of a K step: 32 code bytes and one g32 scale pair each.
template <int R>
struct RawRows {
  uint4 q[R][2];
  uint32_t s[R];
};

// Where a weight row's codes of K step ks lie in the tiled layout (weight_layout.h), in 32 bits
// (the host checks n k / 2 < 2^31): the row's 16-row tile, then window ks / 2 of 128 codes, of
// which every full window holds the row's 64 bytes at (row % 16) 64 and the last, 64 wide when
// k % 128 == 64, its 32 bytes at (row % 16) 32.
struct RowAddr {
  uint32_t tile, window, in_full, in_last;
  int full_windows;
  bool valid;
  static __device__ __forceinline__ RowAddr of(int row, const Params& p) {
    return RowAddr{static_cast<uint32_t>(row >> 4) * 8u * static_cast<uint32_t>(p.k),
                   static_cast<uint32_t>(min(16, p.n - (row & ~15))) * 64u,
                   static_cast<uint32_t>(row & 15) * 64u,
                   static_cast<uint32_t>(row & 15) * 32u,
                   p.k / 128,
                   row < p.n};
  }
  __device__ __forceinline__ uint32_t code(int ks) const {
    const int w = ks >> 1;
    return tile + static_cast<uint32_t>(w) * window + (w < full_windows ? in_full : in_last) +
           static_cast<uint32_t>(ks & 1) * 32u;
  }
};

template <int R>
__device__ __forceinline__ void load_raw(const Params& p, const RowAddr (&addr)[R], int ks,
                                         RawRows<R>& raw) {
#pragma unroll
  for (int i = 0; i < R; ++i) {
    if (addr[i].valid) {
      const uint32_t c = addr[i].code(ks);
      raw.q[i][0] = __ldg(reinterpret_cast<const uint4*>(p.codes + c));
      raw.q[i][1] = __ldg(reinterpret_cast<const uint4*>(p.codes + c + 16));
      raw.s[i] = __ldg(reinterpret_cast<const uint16_t*>(p.scales + c / 16));
    } else {
      raw.q[i][0] = raw.q[i][1] = make_uint4(0, 0, 0, 0);
      raw.s[i] = 0;
    }
  }
}

// Decodes rows r0 + 128 i (i < R) of a K step into the stage's FP16 tile. ABL (timing only):
// bit 0 skips it, bit 1 stores the raw words (the stores without the arithmetic), bit 2 does the
// arithmetic but stores one word (the arithmetic without the stores).
template <int R, int ABL>
__device__ __forceinline__ void decode_raw(const RawRows<R>& raw, uint8_t* wdec, int r0) {
  if (ABL & 1) return;
  uint32_t fold = 0;
#pragma unroll
  for (int i = 0; i < R; ++i) {
    const int r = r0 + 128 * i;
    const __half2 s0 = scale_h2(raw.s[i]);
    const __half2 s1 = scale_h2(raw.s[i] >> 8);
    const uint32_t w[8] = {raw.q[i][0].x, raw.q[i][0].y, raw.q[i][0].z, raw.q[i][0].w,
                           raw.q[i][1].x, raw.q[i][1].y, raw.q[i][1].z, raw.q[i][1].w};
#pragma unroll
    for (int c = 0; c < 8; ++c) {  // 16-byte chunk c = elements 8c .. 8c + 7
      uint4* dst = reinterpret_cast<uint4*>(wdec + r * 128 + ((c ^ (r & 7)) << 4));
      if (ABL & 2) {
        *dst = make_uint4(w[c], w[c], w[c], w[c]);
        continue;
      }
      uint32_t h[4];
      e2m1x8_stored_natural(w[c], h);
#pragma unroll
      for (int j = 0; j < 4; ++j) h[j] = hmul2_u32(h[j], c < 4 ? s0 : s1);
      if (ABL & 4) {
        fold ^= h[0] ^ h[1] ^ h[2] ^ h[3];
      } else {
        *dst = make_uint4(h[0], h[1], h[2], h[3]);
      }
    }
  }
  if (ABL & 4) *reinterpret_cast<uint32_t*>(wdec + r0 * 128) = fold;
}

__device__ __forceinline__ void store_pair(float* c, size_t i, float a, float b, bool acc) {
  float2* o = reinterpret_cast<float2*>(c + i);
  if (acc) {
    const float2 y = *o;
    a = y.x + a;
    b = y.y + b;
  }
  *o = make_float2(a, b);
}
__device__ __forceinline__ void store_pair(__nv_bfloat16* c, size_t i, float a, float b, bool) {
  *reinterpret_cast<__nv_bfloat162*>(c + i) = __floats2bfloat162_rn(a, b);
}

template <class C, typename OutT>
__global__ void __launch_bounds__(C::kThreads, 1) sharq_prefill_ws_kernel(Params p) {
  constexpr int S = C::kStages;
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  uint8_t* smem = smem_raw + ((1024 - (su32(smem_raw) & 1023)) & 1023);
  __shared__ __align__(8) uint64_t full[S], empty[S];
  const uint32_t sbase = su32(smem);
  const int tid = threadIdx.x, wg = tid / 128;
  const int m_tiles = (p.m + kBM - 1) / kBM, nk = p.k / kBK;
  const int tiles = m_tiles * ((p.n + kBN - 1) / kBN);
  const int tile_step = C::PERSIST ? static_cast<int>(gridDim.x) : tiles;
  if (tid == 0) {
    for (int s = 0; s < S; ++s) {
      mbar_init(su32(&full[s]), 1 + C::kDecoders);  // bulk copies' expect_tx + every decoder
      mbar_init(su32(&empty[s]), 2);                // one arrive per consumer warpgroup
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (wg == 2) {  // producer
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(C::kProducerRegs) : "memory");
    const int pt = tid - 256;
    // Stage s's activation images of M tile mt, K step ks, counted on its full barrier.
    auto copy_stage = [&](int s, int mt, int ks) {
      const uint32_t st = sbase + s * C::kBytes, bar = su32(&full[s]);
      mbar_expect_tx(bar, C::kAct);
      const size_t img = static_cast<size_t>(mt) * nk + ks;
      bulk_copy(st + kWdec, p.rimg + img * p.rpaths * kR, C::DP * kR, bar);
      if (C::SP) {
        bulk_copy(st + kWdec + C::DP * kR, p.simg + img * kS, kS, bar);
        bulk_copy(st + kWdec + C::DP * kR + kS, p.eimg + img * kE, kE, bar);
      }
    };
    if (C::CD) {  // the consumers decode: only the bulk copies are left here
      if (pt != 0) return;
      for (int ks = 0; ks < nk; ++ks) {
        const int s = ks % S;
        if (ks >= S) mbar_wait(su32(&empty[s]), ((ks / S) & 1) ^ 1);
        copy_stage(s, blockIdx.x % m_tiles, ks);
      }
      return;
    }
    int it = 0;  // stages filled so far (all tiles): slot it % S, phase (it / S) & 1
    for (int tile = blockIdx.x; tile < tiles; tile += tile_step) {
      const int mt = tile % m_tiles, n0 = tile / m_tiles * kBN;  // a weight panel's M tiles
      const RowAddr addr[2] = {RowAddr::of(n0 + pt, p), RowAddr::of(n0 + pt + 128, p)};
      RawRows<2> ra, rb;
      load_raw(p, addr, 0, ra);
      if (nk > 1) load_raw(p, addr, 1, rb);
      auto step = [&](int ks, RawRows<2>& raw) {
        const int s = it % S;
        if (it >= S) mbar_wait(su32(&empty[s]), ((it / S) & 1) ^ 1);
        if (pt == 0) copy_stage(s, mt, ks);
        decode_raw<2, C::ABL>(raw, smem + s * C::kBytes, pt);
        if (ks + 2 < nk) load_raw(p, addr, ks + 2, raw);
        fence_proxy_async();
        mbar_arrive(su32(&full[s]));
        ++it;
      };
      int ks = 0;
      for (; ks + 1 < nk; ks += 2) {
        step(ks, ra);
        step(ks + 1, rb);
      }
      if (ks < nk) step(ks, ra);
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(C::kConsumerRegs) : "memory");
  const int warp = (tid / 32) % 4, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int rl = wg * 64 + warp * 16;  // this warp's first row in the tile
  int it = 0;                          // stages consumed so far (all tiles)
  for (int tile = blockIdx.x; tile < tiles; tile += tile_step) {
    const int mt = tile % m_tiles, n0 = tile / m_tiles * kBN;
    // Consumer decode (CD): thread tid decodes weight row tid of every stage; stage j's codes
    // sit in register set j & 1, loaded two stages ahead.
    const RowAddr caddr[1] = {RowAddr::of(n0 + tid, p)};
    RawRows<1> craw[2];
    auto produce = [&](int j, RawRows<1>& raw) {
      const int s = j % S;
      if (j >= S) mbar_wait(su32(&empty[s]), ((j / S) & 1) ^ 1);
      decode_raw<1, C::ABL>(raw, smem + s * C::kBytes, tid);
      fence_proxy_async();
      mbar_arrive(su32(&full[s]));
      if (j + 2 < nk) load_raw(p, caddr, j + 2, raw);
    };
    if (C::CD) {
      load_raw(p, caddr, 0, craw[0]);
      if (nk > 1) load_raw(p, caddr, 1, craw[1]);
      produce(0, craw[0]);
      if (C::kLead > 1 && nk > 1) produce(1, craw[1]);
    }
    float d[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) d[i] = 0.0f;
    auto step = [&](int ks, uint32_t(&a)[2][4], uint32_t(&meta)[2], RawRows<1>& next_raw) {
      const int s = it % S;
      mbar_wait(su32(&full[s]), (it / S) & 1);
      const uint32_t st = sbase + s * C::kBytes;
      if (C::SP) {
        const uint32_t simg = st + kWdec + C::DP * kR;
        const uint32_t* es =
            reinterpret_cast<const uint32_t*>(smem + s * C::kBytes + kWdec + C::DP * kR + kS);
        const int r = rl + (lane & 7) + ((lane >> 3) & 1) * 8;
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const int c = 2 * j + (lane >> 4);
          ldmatrix_x4(a[j], simg + r * 64 + ((c ^ ((r >> 1) & 3)) << 4));
          meta[j] = t < 2 ? es[(rl / 16) * 32 + j * 16 + g * 2 + t] : 0u;
        }
      }
      fence_acc(d);
      wgmma_fence();
      if (C::SP) {
        wgmma_sp_m64n256k32(d, a[0], smem_desc(st), meta[0]);
        wgmma_sp_m64n256k32(d, a[1], smem_desc(st + 64), meta[1]);
      }
#pragma unroll
      for (int path = 0; path < C::DP; ++path) {
        const uint32_t rimg = st + kWdec + path * kR + wg * 64 * 128;
#pragma unroll
        for (int kk = 0; kk < 4; ++kk)
          wgmma_m64n256k16_ss(d, smem_desc(rimg + kk * 32), smem_desc(st + kk * 32));
      }
      wgmma_commit();
      if (C::CD && ks + C::kLead < nk) produce(ks + C::kLead, next_raw);
      wgmma_wait<1>();
      fence_acc(d);
      // The step before this one (same tile) has completed: its stage goes back.
      if (ks > 0 && tid % 128 == 0) mbar_arrive(su32(&empty[(it + S - 1) % S]));
      ++it;
    };
    uint32_t a0[2][4] = {}, a1[2][4] = {}, m0[2] = {}, m1[2] = {};
    int ks = 0;
    for (; ks + 1 < nk; ks += 2) {  // step ks produces stage ks + kLead: register set kLead & 1
      step(ks, a0, m0, craw[C::kLead & 1]);
      step(ks + 1, a1, m1, craw[(C::kLead + 1) & 1]);
    }
    if (ks < nk) step(ks, a0, m0, craw[C::kLead & 1]);
    wgmma_wait<0>();
    fence_acc(d);
    if (tid % 128 == 0) mbar_arrive(su32(&empty[(it + S - 1) % S]));  // the tile's last stage

    OutT* out = static_cast<OutT*>(p.c);
    // s_x s_w 2^14 in the cuBLAS path's order (decode_weight_f16's alpha); 2^14 undoes the decode's
    // subnormal placement.
    const float scale = p.sx ? *p.sx * *p.sw * 16384.0f : 16384.0f;
    const bool acc = p.accumulate != 0;
    const int row = mt * kBM + rl + g;
#pragma unroll
    for (int j = 0; j < kBN / 8; ++j) {
      const int col = n0 + 8 * j + 2 * t;
      if (col >= p.n) continue;  // n is even
      if (row < p.m)
        store_pair(out, static_cast<size_t>(row) * p.n + col, scale * d[4 * j],
                   scale * d[4 * j + 1], acc);
      if (row + 8 < p.m)
        store_pair(out, static_cast<size_t>(row + 8) * p.n + col, scale * d[4 * j + 2],
                   scale * d[4 * j + 3], acc);
    }
  }
}

}  // namespace sharq::cuda::prefill_ws
