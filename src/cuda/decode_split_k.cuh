// The K split shared by the two decode kernels whose warps own different weight tiles and walk K
// together (gemm_decode_shared.cu on mma.sync, gemm_decode_wgmma.cu on wgmma): short grids (the
// 4096- and 6144-row products) split K across the blocks of a thread-block cluster, whose partial
// sums are added in rank order through distributed shared memory (deterministic: no workspace, no
// atomics), and the launch that sizes the split.
#pragma once

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <tuple>

#include "cp_async.cuh"
#include "decode_mma_tiles.cuh"
#include "device_info.cuh"
#include "launch.cuh"
#include "sharq/cuda/kernels.h"
#include "sharq/cuda/split_k_rule.h"

namespace sharq::cuda::decode_mma {

constexpr int kSplitWarps = 8;  // warps per block of both kernels, a tile (or RT tiles) each
constexpr int kMaxSplitK = split_k::kMaxSplit;

// Bytes of shared memory the reduction needs (the kernels' rings are at least this large).
template <int NT, int RT>
constexpr size_t split_k_bytes() {
  return size_t(kSplitWarps) * RT * NT * 4 * 32 * 4;
}

// Writes the block's tiles: directly without a split; else every block leaves its partial sums in
// its shared memory `red_smem` (the caller's ring, free once every warp is past its last window
// and the block's copies have landed) and block rank r of the cluster sums warps w = r (mod split)
// over the ranks in order and writes them. Every thread of every block must call it.
template <int NT, int RT, typename OutT>
__device__ __forceinline__ void store_or_reduce(const float (&acc)[RT][NT][4],
                                                const TileRef<OutT>& tr, bool active,
                                                const float* sx, int m, bool accumulate,
                                                void* red_smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (gridDim.y == 1) {
    if (active) {
#pragma unroll
      for (int st = 0; st < RT; ++st) {
        store_tile<NT, false>(acc[st], tr, tr.row_base + 16 * st, sx, m, accumulate, lane);
      }
    }
    return;
  }
  cp_async_wait<0>();
  __syncthreads();
  namespace cg = cooperative_groups;
  float(*red)[RT][NT][4][32] = reinterpret_cast<float(*)[RT][NT][4][32]>(red_smem);
#pragma unroll
  for (int st = 0; st < RT; ++st) {
#pragma unroll
    for (int i = 0; i < NT; ++i) {
#pragma unroll
      for (int c = 0; c < 4; ++c) red[warp][st][i][c][lane] = acc[st][i][c];
    }
  }
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();
  const int ranks = static_cast<int>(cluster.num_blocks());
  if (active && warp % ranks == static_cast<int>(cluster.block_rank())) {
#pragma unroll
    for (int st = 0; st < RT; ++st) {
      float v[NT][4] = {};
      for (int r = 0; r < ranks; ++r) {
        const float(*rr)[RT][NT][4][32] = cluster.map_shared_rank(red, r);
#pragma unroll
        for (int i = 0; i < NT; ++i) {
#pragma unroll
          for (int c = 0; c < 4; ++c) v[i][c] += rr[warp][st][i][c][lane];
        }
      }
      store_tile<NT, false>(v, tr, tr.row_base + 16 * st, sx, m, accumulate, lane);
    }
  }
  cluster.sync();  // no block leaves while another still reads its shared memory
}

// Blocks of one kernel instance resident on the whole device (its dynamic shared memory opted
// in first, once).
template <auto Kernel, int Threads, size_t Smem>
int resident_blocks_smem(const char* what) {
  static const int n = [what] {
    check(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(Smem)),
          what);
    int per_sm = 0;
    check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, Kernel, Threads, Smem),
          "occupancy");
    return sm_count() * per_sm;
  }();
  return n;
}

// Clusters of (1, ck) blocks of `kernel` that are resident on the device at once. A cluster's
// blocks must share one GPC, so this can be below resident blocks / ck: an H200 holds 264 blocks
// of the 2-blocks-an-SM builds but 30 clusters of 8 of them (ncu, session 18).
inline int max_active_clusters(const void* kernel, size_t smem, int ck) {
  static std::mutex mu;
  static std::map<std::tuple<const void*, size_t, int>, int> cache;
  const std::lock_guard<std::mutex> lock(mu);
  const auto key = std::make_tuple(kernel, smem, ck);
  if (const auto it = cache.find(key); it != cache.end()) return it->second;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(1, static_cast<unsigned>(ck));
  cfg.blockDim = dim3(kSplitWarps * 32);
  cfg.dynamicSmemBytes = smem;
  cudaLaunchAttribute attr = {};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = 1;
  attr.val.clusterDim.y = static_cast<unsigned>(ck);
  attr.val.clusterDim.z = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  int n = 0;
  check(cudaOccupancyMaxActiveClusters(&n, kernel, &cfg), "cudaOccupancyMaxActiveClusters");
  cache.emplace(key, n);
  return n;
}

// SHARQ_CUDA_DECODE_SPLIT_OLD=1 (A/B): session 17's rule (below) and dispatch (the o projection
// per-tile at M = 17..32; gemm_decode_mma.cu).
inline bool split_rule_old() {
  static const bool old = [] {
    const char* e = std::getenv("SHARQ_CUDA_DECODE_SPLIT_OLD");
    return e && e[0] == '1';
  }();
  return old;
}

// Whether a launch split over clusters is a programmatic dependent (SHARQ_CUDA_DECODE_SPLIT_PDL=0
// never, =1 always for A/B; default: at most 16 rows). Measured on an H200 (session 18, the
// engine's decode, two alternating runs): with it off above 16 rows batch 32 ran 2642 / 2642
// tok/s against 2469 / 2469 on (2435 / 2372 with session 17's split), while batch 16 ran 2006 /
// 1944 off against 2046 / 2037 on. bench_gemm's engine-shaped loop (prepare + GEMM in a graph) puts
// it on the one-wave o and down products at M = 32: the down linear 57.9 us without PDL, 89.0
// with it. Not explained yet; the likeliest cause is the early-launched clusters being placed
// while the prepare's blocks still hold the slots they need.
inline bool split_pdl(int64_t m) {
  static const int mode = [] {
    const char* e = std::getenv("SHARQ_CUDA_DECODE_SPLIT_PDL");
    return e && (e[0] == '0' || e[0] == '1') ? e[0] - '0' : -1;
  }();
  return mode == -1 ? m <= 16 : mode == 1;
}

// Launches `kernel` (m activation rows) on (groups, split) blocks of kSplitWarps warps, clusters of
// (1, split), as a programmatic dependent where PDL is on (and split_pdl allows it). split_k <= 0
// chooses the split (include/sharq/cuda/split_k_rule.h).
template <typename... KArgs, typename... Args>
void launch_split_k(void (*kernel)(KArgs...), int resident, int64_t groups, int64_t k, int split_k,
                    int64_t m, size_t smem, cudaStream_t stream, const char* what, Args... args) {
  const int64_t nwin = (k + kWin - 1) / kWin;
  int ck = split_k;
  if (ck <= 0 && split_rule_old()) {
    ck = split_k::split_k_session17(groups, nwin, resident);
  } else if (ck <= 0) {
    ck = split_k::choose(groups, nwin, resident, [&](int c) {
      return max_active_clusters(reinterpret_cast<const void*>(kernel), smem, c);
    });
  }
  ck = static_cast<int>(std::min<int64_t>({ck, kMaxSplitK, nwin}));
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(groups), static_cast<unsigned>(ck));
  cfg.blockDim = dim3(kSplitWarps * 32);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attrs[2] = {};
  attrs[0].id = cudaLaunchAttributeClusterDimension;
  attrs[0].val.clusterDim.x = 1;
  attrs[0].val.clusterDim.y = static_cast<unsigned>(ck);
  attrs[0].val.clusterDim.z = 1;
  attrs[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attrs[1].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attrs;
  cfg.numAttrs = pdl_enabled() && (ck == 1 || split_pdl(m)) ? 2 : 1;
  check(cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...), what);
}

}  // namespace sharq::cuda::decode_mma
