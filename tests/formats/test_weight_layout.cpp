// The GPU weight layout (include/sharq/cuda/weight_layout.h): a plain header, so its placement
// rules are checked here on the CPU; the GPU tests check that the kernels read it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "sharq/cuda/weight_layout.h"

namespace sharq::cuda::weight_layout {
namespace {

struct Shape {
  int64_t n, k;
};
// Full tiles and windows, a short last tile (n % 16), a half last window (k % 128 == 64), both.
const Shape kShapes[] = {{1, 64},  {16, 128},   {17, 192}, {40, 576},
                         {33, 64}, {128, 4096}, {48, 320}};

TEST(WeightLayout, EveryCodeAndScaleByteHasOnePlace) {
  for (const auto& [n, k] : kShapes) {
    std::vector<int> hits(static_cast<size_t>(n * k / 2), 0);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t kk = 0; kk < k; kk += 2) {
        const int64_t o = code_offset(r, kk, n, k);
        ASSERT_GE(o, 0);
        ASSERT_LT(o, n * k / 2) << n << "x" << k << " row " << r << " k " << kk;
        ++hits[static_cast<size_t>(o)];
      }
    }
    for (int h : hits) ASSERT_EQ(h, 1) << n << "x" << k;
    for (int g : {16, 32}) {
      std::vector<int> shits(static_cast<size_t>(n * k / g), 0);
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t kk = 0; kk < k; kk += g) {
          const int64_t o = scale_offset(r, kk, n, k, g);
          ASSERT_GE(o, 0);
          ASSERT_LT(o, n * k / g);
          ++shits[static_cast<size_t>(o)];
        }
      }
      for (int h : shits) ASSERT_EQ(h, 1) << n << "x" << k << " g" << g;
    }
  }
}

// What the kernels rely on: a 32-element block's 16 code bytes are one run, its g16 scales are
// adjacent, a row's codes within one window are one run, and a full tile-window (16 rows x 128)
// is one 1 KB run starting at a multiple of 1 KB within its tile.
TEST(WeightLayout, RunsTheKernelsLoadAtOnce) {
  for (const auto& [n, k] : kShapes) {
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t kk = 0; kk < k; kk += 32) {
        const int64_t o = code_offset(r, kk, n, k);
        EXPECT_EQ(o % 16, 0);
        for (int64_t j = 0; j < 32; j += 2) EXPECT_EQ(code_offset(r, kk + j, n, k), o + j / 2);
        EXPECT_EQ(scale_offset(r, kk + 16, n, k, 16), scale_offset(r, kk, n, k, 16) + 1);
        // Any code byte of a block leads to the block's scale (kernels derive one from the other).
        for (int64_t j = 0; j < 32; j += 2) {
          EXPECT_EQ(scale_of_code(code_offset(r, kk + j, n, k), 32), scale_offset(r, kk, n, k, 32));
          EXPECT_EQ(scale_of_code(code_offset(r, kk + j, n, k), 16),
                    scale_offset(r, kk + (j & 16), n, k, 16));
        }
      }
    }
  }
  const int64_t n = 64, k = 512;
  for (int64_t tile = 0; tile < n / 16; ++tile) {
    for (int64_t w = 0; w < k / 128; ++w) {
      const int64_t base = code_offset(16 * tile, 128 * w, n, k);
      EXPECT_EQ(base, (tile * (k / 128) + w) * 1024);
      for (int64_t r = 0; r < 16; ++r) {
        EXPECT_EQ(code_offset(16 * tile + r, 128 * w, n, k), base + 64 * r);
        EXPECT_EQ(scale_offset(16 * tile + r, 128 * w, n, k, 32),
                  (tile * (k / 128) + w) * 64 + 4 * r);
      }
    }
  }
}

// Hand-derived offsets. n = 40, k = 192: tiles of 16, 16 and 8 rows; windows 128 and 64 wide.
//   row 17, k 130: tile 1 starts at 16 * 192 / 2 = 1536; window 1 follows window 0's 16 rows x
//   64 bytes (+1024); row 1 of the tile in a 64-wide window (+32); element 2 of the window (+1):
//   2593.
//   row 35, k 70: tile 2 at 3072; window 0; row 3 of a tile of 8 rows (+3 * 64); element 70
//   (+35): 3299.  row 35, k 128: window 1 after 8 rows x 64 (+512), row 3 x 32: 3680.
//   g32 scale of row 35, k 128: tile 2 at 2 * 16 * 6 = 192; window 1 after 8 rows x 4 (+32); row
//   3 x 2 (+6): 230.  g16 scale of row 17, k 176: 16 * 12 = 192, +16 * 8, +1 * 4, +48 / 16: 327.
TEST(WeightLayout, HandDerivedOffsets) {
  EXPECT_EQ(code_offset(17, 130, 40, 192), 2593);
  EXPECT_EQ(code_offset(35, 70, 40, 192), 3299);
  EXPECT_EQ(code_offset(35, 128, 40, 192), 3680);
  EXPECT_EQ(scale_offset(35, 128, 40, 192, 32), 230);
  EXPECT_EQ(scale_offset(17, 176, 40, 192, 16), 327);
}

TEST(WeightLayout, RoundTripAndSixteenRowCuts) {
  const int64_t n = 40, k = 192;
  for (int g : {16, 32}) {
    std::vector<uint8_t> codes(n * k / 2), scales(n * k / g);
    std::iota(codes.begin(), codes.end(), uint8_t{7});
    std::iota(scales.begin(), scales.end(), uint8_t{3});
    std::vector<uint8_t> tc(codes.size()), ts(scales.size()), rc(codes.size()), rs(scales.size());
    to_tiled(codes.data(), scales.data(), n, k, g, tc.data(), ts.data());
    EXPECT_NE(tc, codes);
    from_tiled(tc.data(), ts.data(), n, k, g, rc.data(), rs.data());
    EXPECT_EQ(rc, codes);
    EXPECT_EQ(rs, scales);
    // Rows [16, 40) of the tiled whole are the tiled 24-row matrix of those rows.
    std::vector<uint8_t> pc(24 * k / 2), ps(24 * k / g);
    to_tiled(codes.data() + 16 * k / 2, scales.data() + 16 * k / g, 24, k, g, pc.data(), ps.data());
    EXPECT_TRUE(std::equal(pc.begin(), pc.end(), tc.begin() + 16 * k / 2));
    EXPECT_TRUE(std::equal(ps.begin(), ps.end(), ts.begin() + 16 * k / g));
  }
}

// The stored bit order of a code word against a table written out by hand: element e's SPEC
// bits m, e0, e1, s (nibble bits 0-3) land at these stored bits.
TEST(WeightLayout, StoredCodeWordPlacesEachBitWhereTheTableSays) {
  const int where[8][4] = {{9, 10, 11, 15},  {1, 2, 3, 7},     {4, 5, 6, 0},     {12, 13, 14, 8},
                           {25, 26, 27, 31}, {17, 18, 19, 23}, {20, 21, 22, 16}, {28, 29, 30, 24}};
  uint32_t used = 0;
  for (int e = 0; e < 8; ++e) {
    for (int b = 0; b < 4; ++b) {
      const uint32_t spec = 1u << (4 * e + b);
      EXPECT_EQ(stored_code_word(spec), 1u << where[e][b]) << "element " << e << " bit " << b;
      EXPECT_EQ(spec_code_word(1u << where[e][b]), spec) << "element " << e << " bit " << b;
      used |= 1u << where[e][b];
    }
  }
  EXPECT_EQ(used, 0xFFFFFFFFu);
}

// The GEMMs' decode of a stored word (fp4_decode.cuh's e2m1x8_stored_to_f16x2), written here
// with the same shifts and masks on the host, against FP16 high bytes built from the SPEC
// nibbles: pair j's halves are elements j and j + 4, each sign << 15 | (e1 e0 m) << 9.
TEST(WeightLayout, StoredWordDecodeFormulasGiveFp16Pairs) {
  const auto half = [](uint32_t code) { return (code >> 3) << 15 | (code & 7u) << 9; };
  uint64_t state = 0x9E3779B97F4A7C15ull;
  for (int i = 0; i < 200000; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const uint32_t spec =
        i < 16 ? 0x11111111u * static_cast<uint32_t>(i) : static_cast<uint32_t>(state >> 32);
    const uint32_t s = stored_code_word(spec);
    ASSERT_EQ(spec_code_word(s), spec);
    const uint32_t z = ((s << 7) & 0x80808080u) | ((s >> 3) & 0x0E0E0E0Eu);
    const uint32_t got[4] = {s & 0x8E008E00u, (s << 8) & 0x8E008E00u,
                             (z & 0xFFu) << 8 | (z & 0xFF0000u) << 8,
                             (z & 0xFF00u) | (z & 0xFF000000u)};
    for (int j = 0; j < 4; ++j) {
      const uint32_t want = half((spec >> (4 * j)) & 0xFu) | half((spec >> (4 * j + 16)) & 0xFu)
                                                                 << 16;
      ASSERT_EQ(got[j], want) << "word 0x" << std::hex << spec << " pair " << j;
    }
  }
}

}  // namespace
}  // namespace sharq::cuda::weight_layout
