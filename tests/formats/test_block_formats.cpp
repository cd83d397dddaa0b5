// Block formats (SPEC 3) on hand-derived blocks: NVFP4 scales and clamps, MXFP4 shared exponent
// and (6, 8) saturation, HiF4 three-level scales; packed storage round trips; input checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "sharq/codecs.h"
#include "sharq/error.h"
#include "sharq/formats.h"

namespace sharq {
namespace {

std::vector<float> dequant(const PackedTensor& p) {
  std::vector<float> out(static_cast<size_t>(p.rows * p.cols));
  dequantize(p, out.data());
  return out;
}

TEST(Nvfp4, TensorScaleIsMaxOver2688) {
  std::vector<float> x(64, 0.0f);
  x[3] = -5376.0f;  // a = 5376 -> s_t = 2
  const PackedTensor p = quantize(Format::kNvfp4G16, x.data(), 1, 64, "x");
  EXPECT_EQ(p.tensor_scale, 2.0f);
  // x' = -2688 -> block max 2688 -> S = 448 -> code 6 magnitude, negative.
  EXPECT_EQ(p.code(0, 3), 0xF);
  EXPECT_EQ(ue4m3_decode(p.scales[0]), 448.0f);
  EXPECT_EQ(dequant(p)[3], -5376.0f);
}

TEST(Nvfp4, HandDerivedBlock) {
  // a = 2688 -> s_t = 1, so x' = X. Block 0 (16 values) has max 12 -> S = UE4M3(2) = 2, r = 0.5.
  std::vector<float> x(64, 0.0f);
  x[63] = 2688.0f;
  const float block[16] = {12.0f, -12.0f, 5.0f, 3.0f, 2.5f, 1.5f, 0.5f, 0.4f,
                           -7.0f, 10.0f,  0.0f, 9.0f, 8.9f, 1.0f, 6.0f, 7.0f};
  std::memcpy(x.data(), block, sizeof block);
  const PackedTensor p = quantize(Format::kNvfp4G16, x.data(), 1, 64, "x");
  EXPECT_EQ(p.tensor_scale, 1.0f);
  EXPECT_EQ(ue4m3_decode(p.scales[0]), 2.0f);
  // x * 0.5 -> 6, -6, 2.5 (tie -> 2), 1.5, 1.25 (tie -> 1), 0.75 (tie -> 1), 0.25 (tie -> 0), 0.2,
  //            -3.5 (tie -> -4), 5 (tie -> 4), 0, 4.5 -> 4, 4.45 -> 4, 0.5, 3, 3.5 (tie -> 4).
  const float want[16] = {12.0f, -12.0f, 4.0f, 3.0f, 2.0f, 2.0f, 0.0f, 0.0f,
                          -8.0f, 8.0f,   0.0f, 8.0f, 8.0f, 1.0f, 6.0f, 8.0f};
  const auto d = dequant(p);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(d[i], want[i]) << i;
  // Blocks of zeros get the clamped minimum scale 2^-9 and zero codes.
  EXPECT_EQ(ue4m3_decode(p.scales[1]), 0x1p-9f);
  for (int i = 16; i < 32; ++i) EXPECT_EQ(d[i], 0.0f);
  // The outlier block clamps to 448.
  EXPECT_EQ(ue4m3_decode(p.scales[3]), 448.0f);
}

TEST(Nvfp4, G32UsesOneScalePer32) {
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[i] = static_cast<float>(i % 7) - 3.0f;
  const PackedTensor p = quantize(Format::kNvfp4G32, x.data(), 1, 64, "x");
  EXPECT_EQ(p.scales.size(), 2u);
  EXPECT_EQ(p.codes.size(), 32u);
}

TEST(Nvfp4, AllZeroTensorIsAllZeroCodes) {
  std::vector<float> x(128, 0.0f);
  const PackedTensor p = quantize(Format::kNvfp4G16, x.data(), 2, 64, "x");
  EXPECT_EQ(p.tensor_scale, 1.0f);
  for (uint8_t b : p.codes) EXPECT_EQ(b, 0);
}

TEST(Nvfp4, TinyTensorWhoseScaleOverflowsIsAnError) {
  std::vector<float> x(64, 1e-37f);
  EXPECT_THROW(quantize(Format::kNvfp4G16, x.data(), 1, 64, "tiny"), Error);
}

TEST(Mxfp4, SharedExponentAndSaturation) {
  std::vector<float> x(64, 0.0f);
  x[0] = 7.0f;   // floor(log2 7) = 2 -> e = 0 -> 7 in (6, 8) saturates to 6
  x[1] = -2.5f;  // tie -> 2
  x[32] = 1.0f;  // block 1: e = -2 -> 1 * 4 = 4
  x[33] = 0.3f;  // 1.2 -> 1 -> 0.25
  const PackedTensor p = quantize(Format::kMxfp4, x.data(), 1, 64, "x");
  EXPECT_EQ(e8m0_decode(p.scales[0]), 1.0f);
  EXPECT_EQ(e8m0_decode(p.scales[1]), 0.25f);
  const auto d = dequant(p);
  EXPECT_EQ(d[0], 6.0f);
  EXPECT_EQ(d[1], -2.0f);
  EXPECT_EQ(d[32], 1.0f);
  EXPECT_EQ(d[33], 0.25f);
}

TEST(Mxfp4, ZeroBlockHasMinimumExponent) {
  std::vector<float> x(64, 0.0f);
  const PackedTensor p = quantize(Format::kMxfp4, x.data(), 1, 64, "x");
  EXPECT_EQ(p.scales[0], 0);  // e = -127
  for (float v : dequant(p)) EXPECT_EQ(v, 0.0f);
}

TEST(Hif4, ThreeLevelScalesHandDerived) {
  std::vector<float> x(64, 0.0f);
  x[0] = 7.0f;   // Vmax = 7 -> SF = 1 -> B = 1; V8[0] = 7 >= 4 -> E1_8[0] = 1;
                 // V16[0]*REC/2 = 3.5 >= 2 -> E1_16[0] = 1; q = S1P2(7/4 = 1.75) -> 1.75 * 4 = 7
  x[1] = 1.0f;   // same groups: 1/4 = 0.25 -> m = 1 -> 1.0
  x[4] = 2.0f;   // V16[1] = 2: 2/2 = 1 < 2 -> E1_16[1] = 0; q = S1P2(2/2 = 1) -> 1 * 2 = 2
  x[8] = 0.3f;   // V8[1] = 0.3 -> E1_8 = 0, E1_16 = 0; S1P2(0.3) -> 0.25
  x[16] = 3.9f;  // V8[2] = 3.9 < 4 -> E1_8 = 0; 3.9 >= 2 -> E1_16[4] = 1; S1P2(1.95) -> 1.75 -> 3.5
  const PackedTensor p = quantize(Format::kHif4, x.data(), 1, 64, "x");
  Hif4BlockScale w;
  std::memcpy(&w, p.scales.data(), 4);
  EXPECT_EQ(e6m2_decode(w.e6m2), 1.0f);
  EXPECT_EQ(w.e1_8, 0x01);
  EXPECT_EQ(w.e1_16, 0x0011);
  const auto d = dequant(p);
  EXPECT_EQ(d[0], 7.0f);
  EXPECT_EQ(d[1], 1.0f);
  EXPECT_EQ(d[4], 2.0f);
  EXPECT_EQ(d[8], 0.25f);
  EXPECT_EQ(d[16], 3.5f);
}

TEST(Hif4, ZeroBlockUsesMinimumScale) {
  std::vector<float> x(64, 0.0f);
  const PackedTensor p = quantize(Format::kHif4, x.data(), 1, 64, "x");
  Hif4BlockScale w;
  std::memcpy(&w, p.scales.data(), 4);
  EXPECT_EQ(w.e6m2, 0x00);  // 2^-48
  for (float v : dequant(p)) EXPECT_EQ(v, 0.0f);
}

TEST(Fp8, TensorScaleAndSaturation) {
  std::vector<float> x(64, 0.0f);
  x[0] = -896.0f;  // s = 2
  x[1] = 3.0f;     // 1.5 -> exact
  const PackedTensor p = quantize(Format::kFp8, x.data(), 1, 64, "x");
  EXPECT_EQ(p.tensor_scale, 2.0f);
  const auto d = dequant(p);
  EXPECT_EQ(d[0], -896.0f);
  EXPECT_EQ(d[1], 3.0f);
}

// A row in the scaled domain, times s_t, is the whole-tensor dequantization's row, bit for bit
// (dequantize multiplies the same decode * scale by s_t), for every format.
TEST(BlockFormats, ScaledRowTimesTensorScaleIsTheDequantizedRow) {
  const int64_t rows = 3, cols = 128;
  std::vector<float> x(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = std::sin(0.37f * static_cast<float>(i)) * (i % 17 + 1);
  for (Format f :
       {Format::kNvfp4G16, Format::kNvfp4G32, Format::kMxfp4, Format::kHif4, Format::kFp8}) {
    const PackedTensor p = quantize(f, x.data(), rows, cols, "x");
    std::vector<float> all(x.size()), row(static_cast<size_t>(cols));
    dequantize(p, all.data());
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row_scaled(p, r, row.data());
      for (int64_t c = 0; c < cols; ++c) {
        const float want = all[static_cast<size_t>(r * cols + c)];
        const float got = format_traits(f).tensor_scaled ? row[c] * p.tensor_scale : row[c];
        ASSERT_EQ(got, want) << format_traits(f).name << " " << r << "," << c;
      }
    }
  }
}

TEST(BlockFormats, RejectBadShapesAndNonFinite) {
  std::vector<float> x(96, 1.0f);
  for (Format f : {Format::kNvfp4G16, Format::kNvfp4G32, Format::kMxfp4, Format::kHif4}) {
    try {
      quantize(f, x.data(), 1, 96, "act.x");
      FAIL() << "K = 96 accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("act.x"), std::string::npos);
      EXPECT_NE(std::string(e.what()).find("(1 x 96)"), std::string::npos);
    }
  }
  std::vector<float> y(128, 1.0f);
  y[64 + 5] = std::nanf("");
  try {
    quantize(Format::kNvfp4G16, y.data(), 2, 64, "t");
    FAIL() << "NaN accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 1, column 5"), std::string::npos) << e.what();
  }
  y[69] = -INFINITY;
  EXPECT_THROW(quantize(Format::kMxfp4, y.data(), 2, 64, "t"), Error);
}

TEST(FormatTraits, TableIsConsistent) {
  for (const char* name : {"nvfp4-g16", "nvfp4-g32", "mxfp4", "hif4", "fp8-e4m3"}) {
    const FormatTraits& t = format_traits(format_from_name(name));
    EXPECT_STREQ(t.name, name);
    if (t.block) {
      EXPECT_DOUBLE_EQ(t.bits_per_value, t.code_bits + 8.0 * t.scale_bytes / t.block);
    }
  }
  EXPECT_THROW(format_from_name("int4"), Error);
}

}  // namespace
}  // namespace sharq
