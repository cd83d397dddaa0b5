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

#include "cp_async.cuh"
#include "decode_mma_tiles.cuh"
#include "device_info.cuh"
#include "launch.cuh"
#include "sharq/cuda/kernels.h"

namespace sharq::cuda::decode_mma {

constexpr int kSplitWarps = 8;  // warps per block of both kernels, a tile (or RT tiles) each
constexpr int kMaxSplitK = 8;   // the portable cluster size

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

// Launches `kernel` on (groups, split) blocks of kSplitWarps warps, clusters of (1, split), as a
// programmatic dependent where PDL is on. split_k <= 0 chooses the split: K is split while the
// grid still fits one wave, keeping at least four windows per block (a partial second wave
// measured worse than the idle SMs it fills: ncu on an H100, the 14336-row gate product at
// M = 32, 224 blocks of split 4 over 132 resident ran 1.7 waves).
template <typename... KArgs, typename... Args>
void launch_split_k(void (*kernel)(KArgs...), int resident, int64_t groups, int64_t k, int split_k,
                    size_t smem, cudaStream_t stream, const char* what, Args... args) {
  const int64_t nwin = (k + kWin - 1) / kWin;
  int ck = split_k;
  if (ck <= 0) {
    ck = 1;
    while (ck < kMaxSplitK && groups * ck * 2 <= resident && nwin >= 8 * ck) ck *= 2;
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
  cfg.numAttrs = pdl_enabled() ? 2 : 1;
  check(cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...), what);
}

}  // namespace sharq::cuda::decode_mma
