// Experiment variants (issue 4, docs/variants.md): each changes exactly what it says and
// nothing when off.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "sharq/codecs.h"
#include "sharq/decompose.h"
#include "sharq/error.h"
#include "sharq/masks.h"
#include "sharq/synthetic.h"
#include "sharq/weights.h"

namespace sharq {
namespace {

TEST(Variants, ParseAndSuffix) {
  const Variant v = Variant::parse("res-g32,fp8-decoded");
  EXPECT_TRUE(v.residual_g32 && v.fp8_decoded && !v.per_token_scale && !v.energy_pairs);
  EXPECT_EQ(v.suffix(), "+res-g32+fp8-decoded");
  EXPECT_FALSE(Variant::parse("").any());
  EXPECT_THROW(Variant::parse("res-g8"), Error);
}

TEST(Variants, ResidualG32) {
  const auto x = synthetic_activation(4, 128, 1);
  Variant v;
  v.residual_g32 = true;
  const ActivationQuant q = quantize_activation(Mode::kSharqNvfp4, x.data(), 4, 128, "x", 1, v);
  EXPECT_EQ(q.dense_q.format, Format::kNvfp4G32);
  EXPECT_EQ(q.dense_q.scales.size(), 4u * 128 / 32);
}

TEST(Variants, PerTokenScaleEqualsQuantizingEachRowAlone) {
  const auto x = synthetic_activation(6, 128, 2);
  Variant v;
  v.per_token_scale = true;
  const ActivationQuant q = quantize_activation(Mode::kSharqNvfp4, x.data(), 6, 128, "x", 2, v);
  for (int64_t r = 0; r < 6; ++r) {
    const ActivationQuant row =
        quantize_activation(Mode::kSharqNvfp4, x.data() + r * 128, 1, 128, "row");
    for (int64_t c = 0; c < 128; ++c) ASSERT_EQ(q.dequant[r * 128 + c], row.dequant[c]);
  }
}

TEST(Variants, EnergyPairsScoresBySumOfSquares) {
  const float x[8] = {3, 0, 2.5f, 2.5f, 0.1f, 0, 0, 0.2f};
  uint8_t keep_max[8], keep_energy[8];
  mask_row(MaskPattern::k4of8Pairs, x, 8, keep_max);
  mask_row(MaskPattern::k4of8PairsEnergy, x, 8, keep_energy);
  EXPECT_EQ(keep_max[0], 1);     // max: 3 > 2.5
  EXPECT_EQ(keep_energy[2], 1);  // energy: 12.5 > 9, both kept here
  const float y[8] = {3, 0, 2.5f, 2.5f, 2.9f, 0, 2.9f, 0.0f};
  mask_row(MaskPattern::k4of8Pairs, y, 8, keep_max);
  mask_row(MaskPattern::k4of8PairsEnergy, y, 8, keep_energy);
  EXPECT_EQ(keep_max[2], 0);     // max scores 3, 2.5, 2.9, 2.9: pair 1 dropped
  EXPECT_EQ(keep_energy[2], 1);  // energy 9, 12.5, 8.41, 8.41: pairs 0 and 1 kept
  EXPECT_EQ(keep_energy[4], 0);
}

TEST(Variants, Fp8DecodedValuesAreOnTheShiftedE4M3Grid) {
  const auto x = synthetic_activation(4, 128, 3);
  Variant v;
  v.fp8_decoded = true;
  const ActivationQuant q = quantize_activation(Mode::kSharqNvfp4, x.data(), 4, 128, "x", 1, v);
  // The backbone equals the packed codes' decoded values, FP8-rounded, times s_t.
  std::vector<float> decoded(q.sparse.size());
  PackedTensor unscaled = q.sparse_q;
  unscaled.tensor_scale = 1.0f;
  dequantize(unscaled, decoded.data());
  round_decoded_to_fp8(decoded.data(), static_cast<int64_t>(decoded.size()));
  for (size_t i = 0; i < q.sparse.size(); ++i) {
    ASSERT_EQ(q.sparse[i], decoded[i] * q.tensor_scale);
    const float shifted = decoded[i] * 0.125f;
    ASSERT_EQ(e4m3_decode(e4m3_encode(shifted)), shifted);
  }
  const auto w = synthetic_weight(4, 128, 4);
  const QuantizedWeight qw = quantize_weight(Mode::kSharqNvfp4, w.data(), 4, 128, "w");
  std::vector<float> plain(w.size()), rounded(w.size());
  dequantize_weight(qw, plain.data());
  dequantize_weight(qw, rounded.data(), 1, v);
  int changed = 0;
  for (size_t i = 0; i < w.size(); ++i) changed += plain[i] != rounded[i];
  EXPECT_GT(changed, 0);  // 6-bit significands of q*S do not all fit E4M3's 4
}

}  // namespace
}  // namespace sharq

namespace sharq {
namespace {

TEST(Variants, PerTokenModeEqualsTheVariantAndQuantizesRowsAlone) {
  const auto x = synthetic_activation(5, 256, 8);
  Variant v;
  v.per_token_scale = true;
  const ActivationQuant a = quantize_activation(Mode::kSharqNvfp4PerToken, x.data(), 5, 256, "x");
  const ActivationQuant b = quantize_activation(Mode::kSharqNvfp4, x.data(), 5, 256, "x", 1, v);
  EXPECT_EQ(a.dequant, b.dequant);
  EXPECT_EQ(a.sparse_q.codes, b.sparse_q.codes);
  EXPECT_EQ(a.dense_q.scales, b.dense_q.scales);
  const ActivationQuant row3 =
      quantize_activation(Mode::kSharqNvfp4, x.data() + 3 * 256, 1, 256, "r");
  for (int c = 0; c < 256; ++c) EXPECT_EQ(a.dequant[3 * 256 + c], row3.dequant[c]);
  EXPECT_EQ(mode_from_name("sharq-nvfp4-pt"), Mode::kSharqNvfp4PerToken);
  EXPECT_TRUE(is_decomposition(Mode::kSharqNvfp4PerToken));
}

}  // namespace
}  // namespace sharq
