// ggml block dequantization against gguf-py's (tests/model/make_quant_expected.py wrote the
// expected floats), plus fp16 round trips and the Q8_0 quantizer. Not GGUF container tests.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "sharq/error.h"
#include "sharq/model/ggml_quants.h"
#include "sharq/model/gguf.h"

using namespace sharq::model;

namespace {

std::vector<uint8_t> from_hex(const std::string& h) {
  std::vector<uint8_t> b(h.size() / 2);
  for (size_t i = 0; i < b.size(); ++i)
    b[i] = static_cast<uint8_t>(std::stoi(h.substr(2 * i, 2), nullptr, 16));
  return b;
}

}  // namespace

TEST(GgmlQuants, MatchGgufPy) {
  std::ifstream in(SHARQ_MODEL_TEST_DATA "/ggml_quants_expected.json");
  ASSERT_TRUE(in) << "missing fixture";
  const auto cases = nlohmann::json::parse(in);
  ASSERT_GE(cases.size(), 8u);
  for (const auto& c : cases) {
    const auto raw = from_hex(c["hex"].get<std::string>());
    const auto want = c["expected"].get<std::vector<float>>();
    std::vector<float> got(want.size());
    ggml_dequantize(c["type"].get<uint32_t>(), raw, got.data(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      // gguf-py computes in float32 with a different operation order: allow one ulp-ish.
      ASSERT_NEAR(got[i], want[i], 1e-6f * std::max(1.0f, std::fabs(want[i])))
          << c["name"].get<std::string>() << " element " << i;
    }
  }
}

TEST(GgmlQuants, Fp16RoundTrip) {
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const float f = fp16_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_fp16(f), h) << h;
  }
  EXPECT_EQ(float_to_fp16(1.0f + 1.0f / 2048.0f), 0x3c00u);  // tie -> even
  EXPECT_EQ(float_to_fp16(1e6f), 0x7c00u);
}

TEST(GgmlQuants, Q8_0Quantizer) {
  std::vector<float> x(64);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(static_cast<int>(i) - 30) / 64.0f;
  std::vector<uint8_t> q(2 * sizeof(BlockQ8_0));
  quantize_q8_0(x.data(), q.data(), x.size());
  std::vector<float> y(64);
  ggml_dequantize(static_cast<uint32_t>(GgmlType::q8_0), q, y.data(), 64);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], x[i], 0.5f / 127.0f) << i;
}

TEST(GgmlQuants, Rejects) {
  std::vector<uint8_t> b(100);
  float out[64];
  EXPECT_THROW(ggml_dequantize(17, b, out, 32), sharq::Error);                      // IQ type
  EXPECT_THROW(ggml_dequantize(8, b, out, 33), sharq::Error);                       // partial block
  EXPECT_THROW(ggml_dequantize(8, std::span(b).first(60), out, 64), sharq::Error);  // short
  EXPECT_EQ(ggml_type_name(14), "Q6_K");
  EXPECT_EQ(ggml_type_name(99), "type 99");
}
