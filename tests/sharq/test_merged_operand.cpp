// The merged SharQ operand (merged_operand.h): hi + lo is the sum of the two paths' decodes
// exactly, hi is its RNE FP16 rounding, and the statistics count what a brute-force pass counts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "sharq/codecs.h"
#include "sharq/decompose.h"
#include "sharq/error.h"
#include "sharq/formats.h"
#include "sharq/merged_operand.h"
#include "sharq/synthetic.h"

namespace sharq {
namespace {

// Hand-derived cases (values are SPEC 5 decodes: E2M1 code x UE4M3 scale).
TEST(MergedOperand, HandDerivedSplits) {
  // 6 x 448 (the largest backbone decode) + 0.5 x 2^-9 (the smallest residual one): FP16's ulp
  // at 2688 is 2, so hi = 2688 (0x6940) and lo = 2^-10 (0x1400).
  MergedHalves h = merge_to_halves(2688.0f, 0x1p-10f);
  EXPECT_EQ(h.hi, 0x6940);
  EXPECT_EQ(h.lo, 0x1400);
  // 3 + 0.5 = 3.5 is an FP16 value: no low part.
  h = merge_to_halves(3.0f, 0.5f);
  EXPECT_EQ(h.hi, 0x4300);
  EXPECT_EQ(h.lo, 0x0000);
  // Residual alone (a dropped element): -1.5.
  h = merge_to_halves(0.0f, -1.5f);
  EXPECT_EQ(h.hi, 0xBE00);
  EXPECT_EQ(h.lo, 0x0000);
  // Ties to even: 6 x 352 = 2112 (mantissa 32, even); 2112 + 1 = 2113 lies halfway to 2114
  // (odd): hi = 2112, lo = +1. 2112 + 3 = 2115 lies halfway between 2114 (odd) and 2116 (even):
  // hi = 2116, lo = -1.
  h = merge_to_halves(2112.0f, 1.0f);
  EXPECT_EQ(h.hi, 0x6820);
  EXPECT_EQ(h.lo, 0x3C00);
  h = merge_to_halves(2112.0f, 3.0f);
  EXPECT_EQ(h.hi, 0x6822);
  EXPECT_EQ(h.lo, 0xBC00);
}

TEST(MergedOperand, RejectsPairsWithoutAnExactSplit) {
  EXPECT_THROW(merge_to_halves(1.0f, 0x1p-30f), Error);      // the float sum itself rounds
  EXPECT_THROW(merge_to_halves(65504.0f, 65504.0f), Error);  // hi overflows FP16
  EXPECT_THROW(merge_to_halves(2048.0f, 0x1p-13f + 0x1p-24f), Error);  // lo needs > 11 bits
}

std::vector<float> scaled(const PackedTensor& p) {
  std::vector<float> out(static_cast<size_t>(p.rows * p.cols));
  for (int64_t r = 0; r < p.rows; ++r) dequantize_row_scaled(p, r, out.data() + r * p.cols);
  return out;
}

// Every element of real decompositions: hi + lo equals sp + rs exactly, and lo is non-zero
// exactly where the sum is not an FP16 value. The statistics against a recount.
TEST(MergedOperand, ExactOnDecompositionsAndStatsMatchARecount) {
  int64_t total_lo = 0;
  for (Mode mode : {Mode::kSharqNvfp4_24, Mode::kSharqNvfp4}) {
    for (uint64_t seed : {3u, 4u}) {
      // A partial window of rows and of columns; three row tiles (128, 128, 44) for the
      // per-tile column count.
      const int64_t rows = 300, cols = 384;
      auto x = synthetic_activation(rows, cols, seed, 6, 300.0f);
      for (int64_t c = 0; c < cols; ++c) x[static_cast<size_t>(2 * cols + c)] = 0.0f;
      const ActivationQuant q = quantize_activation(mode, x.data(), rows, cols, "x");
      const std::vector<float> sp = scaled(q.sparse_q), rs = scaled(q.dense_q);
      int64_t lo = 0, max_row = 0;
      const int64_t wrows = (rows + 7) / 8;
      std::vector<uint8_t> col(cols, 0), win(static_cast<size_t>(wrows * 3), 0);
      std::vector<std::vector<uint8_t>> tile_col(3, std::vector<uint8_t>(cols, 0));
      for (int64_t r = 0; r < rows; ++r) {
        int64_t row_lo = 0;
        for (int64_t c = 0; c < cols; ++c) {
          const size_t i = static_cast<size_t>(r * cols + c);
          const MergedHalves h = merge_to_halves(sp[i], rs[i]);
          const double a = static_cast<double>(sp[i]) + rs[i];
          // (f16_value is checked against CUDA's conversion in
          // CudaHostOracle.F16RoundingAndValues.)
          ASSERT_EQ(static_cast<double>(f16_value(h.hi)) + f16_value(h.lo), a) << r << "," << c;
          const bool fp16_exact = f16_value(f16_bits(static_cast<float>(a))) == a;
          ASSERT_EQ(h.lo != 0, !fp16_exact) << r << "," << c;
          if (h.lo != 0) {
            ++row_lo;
            col[c] = 1;
            tile_col[static_cast<size_t>(r / 128)][static_cast<size_t>(c)] = 1;
            win[static_cast<size_t>((r / 8) * 3 + c / 128)] = 1;
          }
        }
        lo += row_lo;
        max_row = std::max(max_row, row_lo);
      }
      const MergedLoStats s = merged_lo_stats(q);
      EXPECT_EQ(s.rows, rows);
      EXPECT_EQ(s.cols, cols);
      EXPECT_EQ(s.lo_elements, lo);
      EXPECT_EQ(s.max_lo_per_row, max_row);
      EXPECT_EQ(s.windows, wrows * 3);
      EXPECT_EQ(s.lo_windows, std::count(win.begin(), win.end(), 1));
      EXPECT_EQ(s.lo_cols, std::count(col.begin(), col.end(), 1));
      EXPECT_EQ(s.tiles, 3);
      int64_t tile_cols = 0;
      for (const auto& t : tile_col) tile_cols += std::count(t.begin(), t.end(), 1);
      EXPECT_EQ(s.lo_tile_cols, tile_cols);
      EXPECT_LE(s.lo_tile_cols, s.tiles * s.lo_cols);
      EXPECT_GE(s.lo_tile_cols, s.lo_cols);
      EXPECT_LT(s.lo_elements, rows * cols / 20);
      total_lo += s.lo_elements;
    }
  }
  EXPECT_GT(total_lo, 0) << "outliers of 300x leave some low parts: the check above saw them";
}

TEST(MergedOperand, StatsNeedABackbone) {
  const auto x = synthetic_activation(2, 64, 1);
  EXPECT_THROW(merged_lo_stats(quantize_activation(Mode::kNvfp4, x.data(), 2, 64, "x")), Error);
}

}  // namespace
}  // namespace sharq
