// SharQ decomposition (SPEC 5) invariants for every mode: exact N:M backbone, the residual
// against the *quantized* backbone element for element, step-6 units, all-zero rows, and the
// agreement of the hot path with the component-keeping path.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "sharq/codecs.h"
#include "sharq/decompose.h"
#include "sharq/error.h"
#include "sharq/formats.h"
#include "sharq/synthetic.h"

namespace sharq {
namespace {

constexpr int64_t kRows = 24, kCols = 256;

std::vector<float> test_input() {
  auto x = synthetic_activation(kRows, kCols, 11, 4, 80.0f);
  for (int64_t c = 0; c < kCols; ++c) x[static_cast<size_t>(5 * kCols + c)] = 0.0f;  // zero row
  return x;
}

// Dequantizes one row of a packed tensor to its scaled domain.
std::vector<float> scaled_row(const PackedTensor& p, int64_t r) {
  std::vector<float> out(static_cast<size_t>(p.cols));
  dequantize_row_scaled(p, r, out.data());
  return out;
}

class EveryDecompositionMode : public ::testing::TestWithParam<Mode> {};

TEST_P(EveryDecompositionMode, Invariants) {
  const Mode mode = GetParam();
  const ModeTraits& m = mode_traits(mode);
  const auto x = test_input();
  const ActivationQuant q = quantize_activation(mode, x.data(), kRows, kCols, "x", 2);
  const bool scaled = format_traits(m.sparse_format).tensor_scaled;
  float amax = 0;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  const float st = scaled ? amax / 2688.0f : 1.0f;
  ASSERT_EQ(q.tensor_scale, st);
  const float inv = 1.0f / st;
  const int g = mask_group(m.mask);
  for (int64_t r = 0; r < kRows; ++r) {
    const auto sp = scaled_row(q.sparse_q, r);
    const auto rs = scaled_row(q.dense_q, r);
    for (int64_t o = 0; o < kCols; o += g) {
      int count = 0;
      for (int i = 0; i < g; ++i) count += q.keep[static_cast<size_t>(r * kCols + o + i)];
      ASSERT_EQ(count, m.mask == MaskPattern::kNone ? g : g / 2) << "row " << r << " col " << o;
    }
    if (m.residual_used && m.residual_mask == MaskPattern::kNone) {
      // Steps 4-5: R~ is the dense format applied to R = x' - X~_sp (the quantized backbone).
      std::vector<float> rrow(kCols), deq(kCols);
      std::vector<uint8_t> codes(kCols), scales(kCols * 4);
      for (int64_t c = 0; c < kCols; ++c) {
        const float xs = scaled ? x[static_cast<size_t>(r * kCols + c)] * inv
                                : x[static_cast<size_t>(r * kCols + c)];
        rrow[c] = xs - sp[c];
      }
      format_traits(m.dense_format)
          .quantize_row(rrow.data(), kCols, codes.data(), scales.data(), deq.data());
      for (int64_t c = 0; c < kCols; ++c) ASSERT_EQ(deq[c], rs[c]) << "row " << r << " col " << c;
    }
    for (int64_t c = 0; c < kCols; ++c) {
      const size_t i = static_cast<size_t>(r * kCols + c);
      if (!q.keep[i]) {
        ASSERT_EQ(sp[c], 0.0f) << "dropped element has a nonzero backbone code";
      }
      // Step 6: original units, and dequant is their float32 sum.
      ASSERT_EQ(q.sparse[i], sp[c] * st);
      ASSERT_EQ(q.dequant[i], q.sparse[i] + q.residual[i]);
      ASSERT_EQ(q.residual[i], m.residual_used ? rs[c] * st : 0.0f);
    }
  }
  // The zero row reconstructs to zero.
  for (int64_t c = 0; c < kCols; ++c)
    EXPECT_EQ(q.dequant[static_cast<size_t>(5 * kCols + c)], 0.0f);
  // The hot path gives the same bits.
  std::vector<float> fast(x.size());
  fake_quantize_activation(mode, x.data(), kRows, kCols, fast.data(), "x", 2);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(fast[i], q.dequant[i]);
}

INSTANTIATE_TEST_SUITE_P(Modes, EveryDecompositionMode,
                         ::testing::Values(Mode::kSharqNvfp4, Mode::kSharqNvfp4_24,
                                           Mode::kSharqMxfp4, Mode::kSharqHif4, Mode::kSparseOnly,
                                           Mode::kDenseDense, Mode::kSparseSparse),
                         [](const auto& info) {
                           std::string n(mode_name(info.param));
                           for (auto& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

TEST(Decompose, SparseSparseMasksTheResidualAgain) {
  const auto x = test_input();
  const ActivationQuant q = quantize_activation(Mode::kSparseSparse, x.data(), kRows, kCols, "x");
  // The residual codes obey 4:8p too: at most 4 nonzero codes per 8.
  for (int64_t r = 0; r < kRows; ++r) {
    for (int64_t o = 0; o < kCols; o += 8) {
      int nz = 0;
      for (int i = 0; i < 8; ++i) nz += q.residual[static_cast<size_t>(r * kCols + o + i)] != 0.0f;
      EXPECT_LE(nz, 4);
    }
  }
}

TEST(Decompose, SharqBeatsPlainNvfp4OnOutliers) {
  const auto x = synthetic_activation(64, 1024, 5);
  const auto err = [&](Mode m) {
    const ActivationQuant q = quantize_activation(m, x.data(), 64, 1024, "x");
    double num = 0, den = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      num += (q.dequant[i] - x[i]) * (q.dequant[i] - x[i]);
      den += x[i] * x[i];
    }
    return std::sqrt(num / den);
  };
  EXPECT_LT(err(Mode::kSharqNvfp4), 0.6 * err(Mode::kNvfp4));
  EXPECT_GT(err(Mode::kSparseOnly), err(Mode::kNvfp4));
  EXPECT_LT(err(Mode::kDenseDense), err(Mode::kSharqNvfp4) * 1.01);
}

TEST(Decompose, SingleFormatModesMatchTheFormat) {
  const auto x = test_input();
  for (auto [mode, fmt] :
       {std::pair{Mode::kNvfp4, Format::kNvfp4G16}, std::pair{Mode::kMxfp4, Format::kMxfp4},
        std::pair{Mode::kHif4, Format::kHif4}, std::pair{Mode::kFp8, Format::kFp8}}) {
    const ActivationQuant q = quantize_activation(mode, x.data(), kRows, kCols, "x");
    const PackedTensor p = quantize(fmt, x.data(), kRows, kCols, "x");
    std::vector<float> d(x.size());
    dequantize(p, d.data());
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(q.dequant[i], d[i]) << mode_name(mode);
    EXPECT_EQ(q.dense_q.codes, p.codes);
    EXPECT_EQ(q.dense_q.scales, p.scales);
  }
}

TEST(Decompose, Bf16AndW4A16Activations) {
  const auto x = test_input();
  const ActivationQuant a = quantize_activation(Mode::kNvfp4W4A16, x.data(), kRows, kCols, "x");
  EXPECT_EQ(a.dequant, x);
  const ActivationQuant b = quantize_activation(Mode::kBf16, x.data(), kRows, kCols, "x");
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(b.dequant[i], bf16_round(x[i]));
}

TEST(Decompose, ScaleClampsAt2PowMinus9And448) {
  // s_t = 1 (max 2688). A block of tiny values: m/6 < 2^-9 clamps the backbone and residual
  // block scales to 2^-9; the outlier block clamps to 448.
  std::vector<float> x(64, 0.0f);
  x[0] = 2688.0f;
  for (int i = 32; i < 64; ++i) x[i] = 1e-4f * static_cast<float>(i - 31);
  const ActivationQuant q = quantize_activation(Mode::kSharqNvfp4, x.data(), 1, 64, "x");
  EXPECT_EQ(ue4m3_decode(q.sparse_q.scales[0]), 448.0f);
  EXPECT_EQ(ue4m3_decode(q.sparse_q.scales[1]), 0x1p-9f);
  EXPECT_EQ(ue4m3_decode(q.dense_q.scales[2]), 0x1p-9f);
}

TEST(Decompose, RejectsBadInput) {
  std::vector<float> x(100, 1.0f);
  EXPECT_THROW(quantize_activation(Mode::kSharqNvfp4, x.data(), 1, 100, "x"), Error);
  std::vector<float> y(64, 1.0f);
  y[7] = INFINITY;
  EXPECT_THROW(quantize_activation(Mode::kSharqHif4, y.data(), 1, 64, "x"), Error);
  EXPECT_THROW(mode_from_name("sharq-int4"), Error);
}

}  // namespace
}  // namespace sharq
