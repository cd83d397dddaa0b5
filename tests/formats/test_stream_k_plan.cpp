// The stream-K partition of the batched decode GEMM (include/sharq/cuda/stream_k_plan.h): every
// unit belongs to exactly one block, block_of inverts first_unit, ranges differ by at most one
// unit, and the launch rule's edges, checked by brute force over many shapes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>

#include "sharq/cuda/stream_k_plan.h"

namespace sharq::cuda::stream_k {
namespace {

TEST(StreamKPlan, RangesTileTheUnitsEvenly) {
  for (const int64_t units : {1, 7, 64, 1000, 7168, 12345}) {
    for (const int64_t blocks : {1, 3, 132, 160}) {
      if (blocks > units) continue;
      int64_t lo = units, hi = 0;
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t u0 = first_unit(b, units, blocks), u1 = first_unit(b + 1, units, blocks);
        lo = std::min(lo, u1 - u0);
        hi = std::max(hi, u1 - u0);
        for (int64_t u = u0; u < u1; ++u) ASSERT_EQ(block_of(u, units, blocks), b) << units;
      }
      EXPECT_EQ(first_unit(blocks, units, blocks), units);
      EXPECT_LE(hi - lo, 1) << units << " units over " << blocks;
    }
  }
}

TEST(StreamKPlan, GateUpAtBatch32UsesIt) {
  // 4096 x 28672 (gate and up, 1792 16-row tiles = 224 groups of 8), 32 windows, one block an SM
  // on 132 SMs: 54-55 windows a block, so a range touches at most three groups.
  EXPECT_EQ(max_segments(224, 32, 132), 3);
  EXPECT_TRUE(use(224, 32, 132));
}

TEST(StreamKPlan, OneWaveGridsAndShortKStayPlain) {
  EXPECT_FALSE(use(132, 32, 132));  // one wave already
  EXPECT_FALSE(use(48, 32, 132));   // q/k/v: the cluster split's case
  EXPECT_FALSE(use(224, 4, 132));   // K = 512: too few windows
  EXPECT_FALSE(use(224, 32, 0));
}

TEST(StreamKPlan, SegmentBoundMatchesBruteForce) {
  for (const int64_t groups : {133, 200, 224, 500, 1000}) {
    for (const int64_t windows : {8, 9, 32, 112}) {
      const int64_t units = groups * windows, blocks = 132;
      int most = 0;
      for (int64_t b = 0; b < blocks; ++b) {
        int seen = 0;
        int64_t last = -1;
        for (int64_t u = first_unit(b, units, blocks); u < first_unit(b + 1, units, blocks); ++u) {
          if (u / windows != last) ++seen, last = u / windows;
        }
        most = std::max(most, seen);
      }
      EXPECT_EQ(max_segments(groups, windows, blocks), most) << groups << " x " << windows;
      EXPECT_EQ(use(groups, windows, blocks), most <= kMaxSegments);
    }
  }
}

}  // namespace
}  // namespace sharq::cuda::stream_k
