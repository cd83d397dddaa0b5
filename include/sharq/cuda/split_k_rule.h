// How the decode GEMMs whose warps share an activation window (gemm_decode_shared.cu and
// gemm_decode_wgmma.cu) split K over the blocks of a thread-block cluster. Plain C++ so the rule
// has CPU tests (tests/formats/test_split_k_rule.cpp); src/cuda/decode_split_k.cuh feeds it the
// device's occupancy.
//
// The rule: the largest split (any integer up to the portable cluster size of 8, at least four
// 128-K windows a block) whose grid is one wave of resident *clusters*. Counting blocks is not
// enough: a cluster's blocks must share one GPC, so an H200 holds 264 blocks of a two-blocks-an-SM
// build but only 30 clusters of 8 of them. Measured on an H200 (bench_gemm, M = 32, session 18):
// the 14336 x 4096 down product (32 tile groups, two blocks an SM) took 82.1 / 59.3 / 51.3 /
// 69.5 us split 4 / 6 / 7 / 8 ways; split 8 fits the resident blocks but ran its last two clusters
// as a second wave, and session 17's rule (powers of two while twice the grid fits the resident
// blocks, `split_k_session17`) picked it. A partial second wave measured worse than the idle SMs
// it fills (ncu on an H100, the 14336-row gate product at M = 32: 224 blocks of split 4 over 132
// resident ran 1.7 waves), hence one wave.
#pragma once

#include <algorithm>
#include <cstdint>

namespace sharq::cuda::split_k {

inline constexpr int kMaxSplit = 8;    // the portable cluster size
inline constexpr int kMinWindows = 4;  // 128-K windows a block keeps at least

// groups: tile groups (grid x); windows: 128-K windows of K; resident_blocks: blocks of the kernel
// resident on the whole device; max_clusters(c): clusters of c blocks resident at once.
template <typename MaxClusters>
int choose(int64_t groups, int64_t windows, int64_t resident_blocks, MaxClusters&& max_clusters) {
  const int top = static_cast<int>(std::min<int64_t>(kMaxSplit, windows / kMinWindows));
  for (int c = top; c > 1; --c) {
    if (groups * c <= resident_blocks && groups <= max_clusters(c)) return c;
  }
  return 1;
}

// Session 17's rule, kept for A/B (SHARQ_CUDA_DECODE_SPLIT_OLD=1).
inline int split_k_session17(int64_t groups, int64_t windows, int64_t resident_blocks) {
  int ck = 1;
  while (ck < kMaxSplit && groups * ck * 2 <= resident_blocks && windows >= 2 * kMinWindows * ck) {
    ck *= 2;
  }
  return static_cast<int>(std::min<int64_t>(ck, windows));
}

}  // namespace sharq::cuda::split_k
