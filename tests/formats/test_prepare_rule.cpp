// The decode RMSNorm prepare's kernel choice (include/sharq/cuda/prepare_rule.h): the engine's
// shapes (Llama-3.1-8B: 4096-wide rows; the default model's narrower ones) and the rule's edges.
#include <gtest/gtest.h>

#include <cstdint>

#include "sharq/cuda/prepare_rule.h"

namespace sharq::cuda::prepare_rule {
namespace {

TEST(PrepareRule, OneKernelFormSizesItsRegistersToTheRow) {
  EXPECT_EQ(self_depth(1, 4096), 4);  // 1024 float4 over 256 threads
  EXPECT_EQ(self_depth(1, 64), 4);
  EXPECT_EQ(self_depth(2, 4096), 8);   // 128 threads a row
  EXPECT_EQ(self_depth(3, 4096), 16);  // 64 threads a row (the fourth group idle)
  EXPECT_EQ(self_depth(4, 4096), 16);
  EXPECT_EQ(self_depth(4, 1088), 8);  // 272 float4 over 64 threads: 5 (a partial last slice)
  EXPECT_EQ(self_depth(1, 14336), 16);
  EXPECT_EQ(self_depth(1, 16384), 16);  // the widest row alone
  EXPECT_EQ(self_depth(2, 8192), 16);
}

TEST(PrepareRule, OneKernelFormStopsAtFiveRowsOrTooWideARow) {
  EXPECT_EQ(self_depth(5, 4096), 0);
  EXPECT_EQ(self_depth(0, 4096), 0);
  EXPECT_EQ(self_depth(1, 16384 + 64), 0);
  EXPECT_EQ(self_depth(2, 8192 + 64), 0);
  EXPECT_EQ(self_depth(4, 4096 + 64), 0);
}

TEST(PrepareRule, RowStatisticsKernelUpTo64RowsOf8192) {
  EXPECT_EQ(rows_depth(5, 4096), 4);
  EXPECT_EQ(rows_depth(64, 64), 1);
  EXPECT_EQ(rows_depth(17, 1024), 1);
  EXPECT_EQ(rows_depth(8, 2048), 2);
  EXPECT_EQ(rows_depth(5, 8192), 8);
  EXPECT_EQ(rows_depth(65, 4096), 0);
  EXPECT_EQ(rows_depth(1, 8192 + 64), 0);
}

}  // namespace
}  // namespace sharq::cuda::prepare_rule
