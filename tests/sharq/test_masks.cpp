// N:M masks (SPEC 4): counts per group, which elements win, and the lower-index tie rule.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "sharq/masks.h"

namespace sharq {
namespace {

std::vector<int> kept(MaskPattern p, std::vector<float> x) {
  std::vector<uint8_t> keep(x.size());
  mask_row(p, x.data(), static_cast<int64_t>(x.size()), keep.data());
  return {keep.begin(), keep.end()};
}

TEST(Mask2of4, KeepsTwoLargestMagnitudes) {
  EXPECT_EQ(kept(MaskPattern::k2of4, {1, -5, 3, 2}), (std::vector<int>{0, 1, 1, 0}));
  EXPECT_EQ(kept(MaskPattern::k2of4, {-9, 0, 0, 8}), (std::vector<int>{1, 0, 0, 1}));
}

TEST(Mask2of4, TiesGoToLowerIndex) {
  EXPECT_EQ(kept(MaskPattern::k2of4, {1, 1, 1, 1}), (std::vector<int>{1, 1, 0, 0}));
  EXPECT_EQ(kept(MaskPattern::k2of4, {0, 0, 0, 0}), (std::vector<int>{1, 1, 0, 0}));
  EXPECT_EQ(kept(MaskPattern::k2of4, {2, -3, 3, -2}), (std::vector<int>{0, 1, 1, 0}));
  EXPECT_EQ(kept(MaskPattern::k2of4, {5, 2, -2, 2}), (std::vector<int>{1, 1, 0, 0}));
  EXPECT_EQ(kept(MaskPattern::k2of4, {-0.0f, 0.0f, 0.0f, -0.0f}), (std::vector<int>{1, 1, 0, 0}));
}

TEST(Mask4of8Pairs, KeepsTwoPairsByPairMax) {
  // pair scores: max(|1|,|2|)=2, max(|-7|,|0|)=7, max(|3|,|3|)=3, max(|0|,|-6|)=6
  EXPECT_EQ(kept(MaskPattern::k4of8Pairs, {1, 2, -7, 0, 3, 3, 0, -6}),
            (std::vector<int>{0, 0, 1, 1, 0, 0, 1, 1}));
}

TEST(Mask4of8Pairs, TiesGoToLowerPair) {
  EXPECT_EQ(kept(MaskPattern::k4of8Pairs, {4, 0, 0, 4, 4, 4, 1, 1}),
            (std::vector<int>{1, 1, 1, 1, 0, 0, 0, 0}));
  EXPECT_EQ(kept(MaskPattern::k4of8Pairs, {0, 1, 9, 0, 0, -1, 1, 0}),
            (std::vector<int>{1, 1, 1, 1, 0, 0, 0, 0}));
  EXPECT_EQ(kept(MaskPattern::k4of8Pairs, {0, 1, 1, 0, 0, 2, 1, 0}),
            (std::vector<int>{1, 1, 0, 0, 1, 1, 0, 0}));
}

TEST(Masks, ExactCountsOnRandomRowsAndDroppedAreZero) {
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0, 1);
  for (MaskPattern p : {MaskPattern::k2of4, MaskPattern::k4of8Pairs}) {
    const int g = mask_group(p);
    std::vector<float> x(1024), out(1024);
    for (auto& v : x) v = n(rng);
    std::vector<uint8_t> keep(1024);
    apply_mask_row(p, x.data(), 1024, out.data(), keep.data());
    for (int o = 0; o < 1024; o += g) {
      int count = 0;
      for (int i = 0; i < g; ++i) count += keep[o + i];
      EXPECT_EQ(count, g / 2);
      // Every kept candidate scores at least as high as every dropped one.
      for (int i = 0; i < g; ++i) {
        for (int j = 0; j < g; ++j) {
          if (keep[o + i] && !keep[o + j]) {
            const auto score = [&](int e) {
              return p == MaskPattern::k2of4
                         ? std::fabs(x[o + e])
                         : std::max(std::fabs(x[o + (e & ~1)]), std::fabs(x[o + (e | 1)]));
            };
            EXPECT_GE(score(i), score(j));
          }
        }
      }
      for (int i = 0; i < g; ++i) {
        EXPECT_EQ(out[o + i], keep[o + i] ? x[o + i] : 0.0f);
        if (!keep[o + i]) {
          EXPECT_FALSE(std::signbit(out[o + i]));  // exactly +0
        }
      }
    }
  }
}

TEST(Masks, NoneKeepsAll) {
  EXPECT_EQ(kept(MaskPattern::kNone, {0, 1, 2, 3}), (std::vector<int>{1, 1, 1, 1}));
}

}  // namespace
}  // namespace sharq
