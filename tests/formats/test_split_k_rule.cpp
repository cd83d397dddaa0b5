// The decode GEMMs' K split over a cluster (include/sharq/cuda/split_k_rule.h), on the resident
// block and cluster counts an H200 reported for the shapes measured in session 18, and at the
// rule's edges (few windows, no cluster fitting).
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "sharq/cuda/split_k_rule.h"

namespace sharq::cuda::split_k {
namespace {

// Clusters of c blocks resident at once for a two-blocks-an-SM kernel on 132 SMs: what fits per
// GPC, summed. An illustrative split into GPCs of 17 and 15 SMs that reproduces the 30 clusters of
// 8 the H200 reported (the real GPC sizes are not exposed).
int clusters_two_per_sm(int c) {
  const int gpc_slots[] = {34, 34, 34, 34, 34, 34, 30, 30};  // 264 slots
  int n = 0;
  for (const int s : gpc_slots) n += s / c;
  return n;
}

TEST(SplitKRule, DownProductAtM32TakesTheLargestOneWaveSplit) {
  ASSERT_EQ(clusters_two_per_sm(8), 30);
  // 14336 x 4096 at M = 32: 32 tile groups, 112 windows, 264 resident blocks. Split 8 (256
  // blocks) fits the blocks but not the clusters; 7 is the largest that is one wave of clusters.
  EXPECT_EQ(choose(32, 112, 264, clusters_two_per_sm), 7);
  // Session 17's rule counted blocks only and took 8 (a second wave of two clusters).
  EXPECT_EQ(split_k_session17(32, 112, 264), 8);
}

TEST(SplitKRule, LargeGridsStayUnsplit) {
  // 4096 x 28672 at M = 32, two tiles a warp: 112 groups over 132 resident blocks.
  EXPECT_EQ(choose(112, 32, 132, [](int) { return 1000; }), 1);
  EXPECT_EQ(split_k_session17(112, 32, 132), 1);
}

TEST(SplitKRule, KeepsFourWindowsABlock) {
  EXPECT_EQ(choose(1, 12, 264, [](int) { return 1000; }), 3);
  EXPECT_EQ(choose(1, 7, 264, [](int) { return 1000; }), 1);
  EXPECT_EQ(choose(1, 1000, 264, [](int) { return 1000; }), kMaxSplit);
  EXPECT_EQ(split_k_session17(1, 12, 264), 2);
}

TEST(SplitKRule, FallsBackWhenNoClusterFits) {
  // A device whose clusters of more than 2 blocks never fit: split 2 or none.
  EXPECT_EQ(choose(10, 64, 264, [](int c) { return c <= 2 ? 100 : 0; }), 2);
  EXPECT_EQ(choose(10, 64, 264, [](int) { return 0; }), 1);
}

TEST(SplitKRule, AsksOnlyAboutSplitsThatFitTheBlocks) {
  std::vector<int> asked;
  const int got = choose(40, 64, 264, [&](int c) {
    asked.push_back(c);
    return 1000;
  });
  EXPECT_EQ(got, 6);  // 40 x 7 = 280 blocks > 264
  EXPECT_EQ(asked, std::vector<int>{6});
}

}  // namespace
}  // namespace sharq::cuda::split_k
