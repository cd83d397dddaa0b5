// The split-key decode attention's key ranges (include/sharq/cuda/attn_split_rule.h) on an H200's
// 528 decode slots (132 SMs x 4 blocks) for Llama-3.1-8B's attention (8 kv heads, one chunk of 4
// query heads each) at the engine bench's capacity (1024 + 64 keys), and at the rule's edges.
#include <gtest/gtest.h>

#include <cstdint>

#include "sharq/cuda/attn_split_rule.h"

namespace sharq::cuda::attn_split {
namespace {

constexpr int64_t kSlots = 132 * 4;
constexpr int64_t kCap = 1088;

TEST(AttnSplitRule, FillsTheGpuUpToTheKeysAvailable) {
  // Batch 1: 8 groups would want 66 ranges; 1088 keys give at most 34 of 32 keys.
  const Split b1 = choose(8, kCap, kSlots);
  EXPECT_EQ(b1.splits_bound, 34);
  EXPECT_EQ(b1.per_split, 32);
  EXPECT_EQ(b1.splits, 34);
  // Batch 8: the fewest ranges that fill 528 slots, 9 (576 blocks, 1.09 waves, kept).
  const Split b8 = choose(64, kCap, kSlots);
  EXPECT_EQ(b8.splits_bound, 9);
  EXPECT_EQ(b8.per_split, 128);
  EXPECT_EQ(b8.splits, 9);
}

TEST(AttnSplitRule, StaysWithinOneWaveWhenFillingWouldRunPastOneAndAQuarter) {
  // Batch 32: 3 ranges would be 768 blocks (1.45 waves); 2 ranges (512 blocks) fit in one.
  const Split b32 = choose(256, kCap, kSlots);
  EXPECT_EQ(b32.splits, 2);
  EXPECT_EQ(b32.per_split, 544);
  // Batch 16: 5 ranges, 640 blocks (1.21 waves): filling is kept.
  EXPECT_EQ(choose(128, kCap, kSlots).splits_bound, 5);
  // Batch 48 and up: one range, no combine.
  EXPECT_EQ(choose(384, kCap, kSlots).splits, 1);
  EXPECT_EQ(choose(4096, kCap, kSlots).splits, 1);
}

TEST(AttnSplitRule, RangesCoverTheContextInWholeKeyBlocks) {
  for (const int64_t groups : {1, 3, 8, 24, 64, 100, 256, 1000}) {
    for (const int64_t ctx : {1, 31, 32, 33, 500, 1088, 8192, 131072}) {
      const Split s = choose(groups, ctx, kSlots);
      EXPECT_GE(s.splits, 1);
      EXPECT_LE(s.splits, s.splits_bound);
      EXPECT_LE(s.splits_bound, kMaxSplits);
      EXPECT_EQ(s.per_split % kSplitKeys, 0);
      EXPECT_GE(s.splits * s.per_split, ctx) << groups << " groups, ctx " << ctx;
      EXPECT_LT((s.splits - 1) * s.per_split, ctx) << "an empty last range";
    }
  }
  // The bound never shrinks for a larger context (it sizes the workspace for any position).
  for (int64_t ctx = 1; ctx < 5000; ctx += 7) {
    EXPECT_LE(choose(8, ctx, kSlots).splits_bound, choose(8, ctx + 7, kSlots).splits_bound);
  }
}

// The FP16-cache kernel's plan (src/cuda/attention.cu): 6 x 132 slots, ranges of whole 64-key
// granules (four warps of 16-key tiles). Measured best on the H200 of the plans tried (session
// 24): batch 1 17 ranges of 64 keys (not 34 of 32, where two warps idle), batch 32 3 ranges.
TEST(AttnSplitRule, Fp16KernelPlanInWholeGranules) {
  constexpr int64_t kTcSlots = 132 * 6;
  const Split b1 = choose(8, kCap, kTcSlots, 64);
  EXPECT_EQ(b1.per_split, 64);
  EXPECT_EQ(b1.splits, 17);
  const Split b8 = choose(64, kCap, kTcSlots, 64);
  EXPECT_EQ(b8.per_split, 128);
  EXPECT_EQ(b8.splits, 9);
  const Split b32 = choose(256, kCap, kTcSlots, 64);
  EXPECT_EQ(b32.splits, 3);
  EXPECT_EQ(b32.per_split, 384);
  for (const int64_t ctx : {1, 63, 64, 65, 1088, 8192}) {
    const Split s = choose(8, ctx, kTcSlots, 64);
    EXPECT_EQ(s.per_split % 64, 0);
    EXPECT_GE(s.splits * s.per_split, ctx);
    EXPECT_LT((s.splits - 1) * s.per_split, ctx);
  }
}

}  // namespace
}  // namespace sharq::cuda::attn_split
