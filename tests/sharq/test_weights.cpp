// Weight rules per mode (SPEC 6): the SharQ payload is stored once at g32 and the g16 view
// reads its scales without a copy; dequantized weights equal the format's own rule.
#include <gtest/gtest.h>

#include <vector>

#include "sharq/codecs.h"
#include "sharq/error.h"
#include "sharq/synthetic.h"
#include "sharq/weights.h"

namespace sharq {
namespace {

TEST(Weights, SharqModesStoreOneG32Payload) {
  const int64_t n = 8, k = 256;
  const auto w = synthetic_weight(n, k, 4);
  for (Mode m : {Mode::kSharqNvfp4, Mode::kSharqNvfp4_24, Mode::kSparseOnly, Mode::kDenseDense,
                 Mode::kSparseSparse}) {
    const QuantizedWeight q = quantize_weight(m, w.data(), n, k, "w");
    EXPECT_EQ(q.packed.format, Format::kNvfp4G32);
    EXPECT_EQ(q.packed.codes.size(), static_cast<size_t>(n * k / 2));
    EXPECT_EQ(q.packed.scales.size(), static_cast<size_t>(n * k / 32));
    EXPECT_EQ(weight_storage_bytes(q), n * k / 2 + n * k / 32 + 4);
  }
}

TEST(Weights, G16ViewEqualsG32Dequantization) {
  const int64_t n = 4, k = 128;
  const auto w = synthetic_weight(n, k, 5);
  const QuantizedWeight q = quantize_weight(Mode::kSharqNvfp4, w.data(), n, k, "w");
  std::vector<float> deq(static_cast<size_t>(n * k));
  dequantize_weight(q, deq.data());
  const Nvfp4G16View view(q.packed);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      EXPECT_EQ(view.scale_code(r, c / 16),
                q.packed.scales[static_cast<size_t>(r * (k / 32) + c / 32)]);
      EXPECT_EQ(view.value(r, c) * q.packed.tensor_scale, deq[static_cast<size_t>(r * k + c)]);
    }
  }
  EXPECT_EQ(&view.payload().codes, &q.packed.codes);  // a view, not a copy
}

TEST(Weights, FormatsPerMode) {
  const auto w = synthetic_weight(2, 64, 6);
  EXPECT_EQ(quantize_weight(Mode::kNvfp4, w.data(), 2, 64, "w").packed.format, Format::kNvfp4G16);
  EXPECT_EQ(quantize_weight(Mode::kNvfp4W4A16, w.data(), 2, 64, "w").packed.format,
            Format::kNvfp4G16);
  EXPECT_EQ(quantize_weight(Mode::kMxfp4, w.data(), 2, 64, "w").packed.format, Format::kMxfp4);
  EXPECT_EQ(quantize_weight(Mode::kSharqHif4, w.data(), 2, 64, "w").packed.format, Format::kHif4);
  EXPECT_EQ(quantize_weight(Mode::kFp8, w.data(), 2, 64, "w").packed.format, Format::kFp8);
  const QuantizedWeight b = quantize_weight(Mode::kBf16, w.data(), 2, 64, "w");
  for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ(b.bf16_values[i], bf16_round(w[i]));
  EXPECT_THROW(Nvfp4G16View(quantize_weight(Mode::kNvfp4, w.data(), 2, 64, "w").packed), Error);
}

}  // namespace
}  // namespace sharq
