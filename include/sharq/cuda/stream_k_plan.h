// Stream-K for the batched decode GEMM on wgmma (src/cuda/gemm_decode_wgmma.cu) when its tile
// groups are more than one wave: the work is groups x windows units (a tile group's 128-K
// windows), numbered group-major, and each of `blocks` persistent blocks takes one contiguous range
// of units, so every block runs the same number of windows (+-1) and no SM idles in a partial
// second wave. A range cuts at most a few groups into segments; each segment's partial sums go to
// a workspace and the block that finishes a group's last segment adds them in segment order
// (deterministic: the same bits whichever block arrives last).
// Why: gate/up at M = 16-32 runs 224 tile groups of one block an SM over 132 SMs, 1.7 waves, and
// forcing the cluster K split 2/4/8 ways made it slower (58 -> 70 / 89 / 123 us at M = 32, H200,
// session 25: every extra block pays the ring's fill again). Plain C++ so the partition has CPU
// tests (tests/formats/test_stream_k_plan.cpp).
#pragma once

#include <algorithm>
#include <cstdint>

#if defined(__CUDACC__)
#define SHARQ_STREAM_K_HD __host__ __device__
#else
#define SHARQ_STREAM_K_HD
#endif

namespace sharq::cuda::stream_k {

inline constexpr int kMaxSegments = 4;  // groups one block's range may touch (workspace slots)
inline constexpr int kMinWindows = 8;   // K windows a group needs for the schedule to be used

// The first unit of block b's range [first_unit(b), first_unit(b + 1)).
SHARQ_STREAM_K_HD constexpr int64_t first_unit(int64_t b, int64_t units, int64_t blocks) {
  return units * b / blocks;
}

// The block whose range holds unit u: the largest b with first_unit(b) <= u.
SHARQ_STREAM_K_HD constexpr int64_t block_of(int64_t u, int64_t units, int64_t blocks) {
  return ((u + 1) * blocks + units - 1) / units - 1;
}

// The most groups any block's range touches.
inline int max_segments(int64_t groups, int64_t windows, int64_t blocks) {
  const int64_t units = groups * windows;
  int64_t most = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t u0 = first_unit(b, units, blocks), u1 = first_unit(b + 1, units, blocks);
    if (u1 > u0) most = std::max(most, (u1 - 1) / windows - u0 / windows + 1);
  }
  return static_cast<int>(most);
}

// Whether a launch of `groups` tile groups over `windows` K windows, `resident` blocks resident on
// the device and the cluster K split already declined (split_k_rule.h answered 1), runs
// stream-K on `resident` blocks: only where the plain grid is more than one wave, K has enough
// windows, and every range fits the workspace's segment slots.
inline bool use(int64_t groups, int64_t windows, int64_t resident) {
  return resident > 0 && groups > resident && windows >= kMinWindows &&
         groups * windows < (int64_t{1} << 30) &&
         max_segments(groups, windows, resident) <= kMaxSegments;
}

}  // namespace sharq::cuda::stream_k
