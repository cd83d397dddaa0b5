// Element and scale codec conformance (SPEC 2) against hand-derived tables and exhaustive
// code round trips. The CUDA host-conversion oracle lives in test_cuda_host_oracle.cpp.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <vector>

#include "sharq/codecs.h"

namespace sharq {
namespace {

uint8_t get_code(const uint8_t* packed, int i) {
  return (i & 1) ? static_cast<uint8_t>(packed[i / 2] >> 4)
                 : static_cast<uint8_t>(packed[i / 2] & 0xF);
}

TEST(E2M1, EveryCodeRoundTrips) {
  for (uint8_t c = 0; c < 16; ++c) {
    const float v = e2m1_decode(c);
    if (c == 8) {  // -0 encodes with its sign kept
      EXPECT_EQ(e2m1_encode(v), 8);
      continue;
    }
    EXPECT_EQ(e2m1_encode(v), c) << "code " << int(c);
  }
}

TEST(E2M1, MidpointsTieToEvenMantissa) {
  // SPEC 2: 0.25->0, 0.75->1, 1.25->1, 1.75->2, 2.5->2, 3.5->4, 5->4.
  const struct {
    float x, want;
  } ties[] = {{0.25f, 0.0f}, {0.75f, 1.0f}, {1.25f, 1.0f}, {1.75f, 2.0f},
              {2.5f, 2.0f},  {3.5f, 4.0f},  {5.0f, 4.0f}};
  for (const auto& t : ties) {
    EXPECT_EQ(e2m1_decode(e2m1_encode(t.x)), t.want) << t.x;
    EXPECT_EQ(e2m1_decode(e2m1_encode(-t.x)), -t.want) << -t.x;
    // One ulp either side leaves the tie and rounds to the nearer neighbour.
    const float below = std::nextafter(t.x, 0.0f), above = std::nextafter(t.x, 10.0f);
    const float lo = e2m1_decode(e2m1_encode(below)), hi = e2m1_decode(e2m1_encode(above));
    EXPECT_LE(lo, t.want);
    EXPECT_GE(hi, t.want);
    EXPECT_LT(lo, hi) << "both neighbours of tie " << t.x << " rounded the same way";
  }
}

TEST(E2M1, SaturatesAndKeepsSign) {
  EXPECT_EQ(e2m1_encode(6.0f), 0x7);
  EXPECT_EQ(e2m1_encode(7.9f), 0x7);
  EXPECT_EQ(e2m1_encode(1e30f), 0x7);
  EXPECT_EQ(e2m1_encode(-1e30f), 0xF);
  EXPECT_EQ(e2m1_encode(-0.1f), 0x8);
  EXPECT_EQ(e2m1_encode(0.0f), 0x0);
}

TEST(E2M1, VectorBlockEqualsScalarCodec) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-8.0f, 8.0f);
  for (int trial = 0; trial < 2000; ++trial) {
    float x[32];
    for (float& v : x) v = u(rng);
    x[trial % 32] = (trial % 3 == 0) ? 1.25f : -0.0f;  // ties and signed zero
    const float r = (trial % 2) ? 1.0f : 0.75f, back = 3.0f;
    uint8_t packed[16];
    float deq[32];
    e2m1_quantize_block<32>(x, r, back, packed, deq);
    for (int i = 0; i < 32; ++i) {
      const uint8_t want = e2m1_encode(x[i] * r);
      ASSERT_EQ(get_code(packed, i), want) << x[i];
      ASSERT_EQ(deq[i], e2m1_decode(want) * back);
    }
  }
}

TEST(E4M3, EveryFiniteCodeRoundTrips) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7F) == 0x7F) {
      EXPECT_TRUE(std::isnan(e4m3_decode(static_cast<uint8_t>(c))));
      continue;
    }
    const float v = e4m3_decode(static_cast<uint8_t>(c));
    EXPECT_EQ(e4m3_encode(v), c) << "code " << c << " value " << v;
  }
}

TEST(E4M3, HandDerivedValues) {
  EXPECT_EQ(e4m3_decode(0x7E), 448.0f);
  EXPECT_EQ(e4m3_decode(0x08), 0x1p-6f);  // min normal
  EXPECT_EQ(e4m3_decode(0x01), 0x1p-9f);  // min subnormal
  EXPECT_EQ(e4m3_decode(0x38), 1.0f);
  EXPECT_EQ(e4m3_decode(0xB8), -1.0f);
  EXPECT_EQ(e4m3_encode(464.0f), 0x7E);  // tie between 448 and (NaN) 480 -> 448
  EXPECT_EQ(e4m3_encode(1e9f), 0x7E);
  EXPECT_EQ(e4m3_encode(-1e9f), 0xFE);
  EXPECT_EQ(e4m3_encode(0x1p-10f), 0x00);   // half of min subnormal: tie to even 0
  EXPECT_EQ(e4m3_encode(0x1.8p-9f), 0x02);  // 1.5 * 2^-9: tie to even 2
  EXPECT_EQ(e4m3_encode(std::nextafter(0x1p-10f, 1.0f)), 0x01);
}

TEST(E4M3, EveryMidpointTiesToEven) {
  // Midpoints between adjacent positive finite codes c, c+1 round to the one with even mantissa.
  for (int c = 0; c < 0x7E; ++c) {
    const double lo = e4m3_decode(static_cast<uint8_t>(c));
    const double hi = e4m3_decode(static_cast<uint8_t>(c + 1));
    const float mid = static_cast<float>((lo + hi) / 2);
    ASSERT_EQ(static_cast<double>(mid), (lo + hi) / 2) << "midpoint not representable";
    const int want = (c % 2 == 0) ? c : c + 1;
    EXPECT_EQ(e4m3_encode(mid), want) << "between codes " << c << " and " << c + 1;
    EXPECT_EQ(e4m3_encode(std::nextafter(mid, 0.0f)), c);
    EXPECT_EQ(e4m3_encode(std::nextafter(mid, 1e9f)), c + 1);
  }
}

TEST(E8M0, PowersOfTwo) {
  EXPECT_EQ(e8m0_decode(127), 1.0f);
  EXPECT_EQ(e8m0_decode(0), 0x1p-127f);
  EXPECT_EQ(e8m0_decode(254), 0x1p127f);
  EXPECT_TRUE(std::isnan(e8m0_decode(0xFF)));
  for (int e = -127; e <= 127; ++e)
    EXPECT_EQ(e8m0_decode(e8m0_encode_exponent(e)), std::ldexp(1.0f, e));
}

TEST(E6M2, GridRoundTripAndClamps) {
  for (int c = 0; c < 255; ++c) {
    const float v = e6m2_decode(static_cast<uint8_t>(c));
    EXPECT_EQ(e6m2_encode(v), c) << "code " << c;
  }
  EXPECT_TRUE(std::isnan(e6m2_decode(0xFF)));
  EXPECT_EQ(e6m2_decode(0x00), 0x1p-48f);
  EXPECT_EQ(e6m2_decode(0xFE), 0x1.8p15f);
  EXPECT_EQ(e6m2_encode(0.0f), 0x00);  // clamp up to 2^-48
  EXPECT_EQ(e6m2_encode(1e-30f), 0x00);
  EXPECT_EQ(e6m2_encode(0x1.cp15f), 0xFE);  // 1.75 * 2^15 clamps to 1.5 * 2^15
  EXPECT_EQ(e6m2_encode(1e30f), 0xFE);
  // RNE on the mantissa: 1.125 is the tie between 1.0 (M=0, even) and 1.25 -> 1.0;
  // 1.375 ties between 1.25 (M=1) and 1.5 (M=2, even) -> 1.5; 1.875 carries into 2.0.
  EXPECT_EQ(e6m2_decode(e6m2_encode(1.125f)), 1.0f);
  EXPECT_EQ(e6m2_decode(e6m2_encode(1.375f)), 1.5f);
  EXPECT_EQ(e6m2_decode(e6m2_encode(1.875f)), 2.0f);
  EXPECT_EQ(e6m2_decode(e6m2_encode(std::nextafter(1.125f, 2.0f))), 1.25f);
}

TEST(S1P2, GridTiesAndSaturation) {
  for (uint8_t c = 0; c < 16; ++c) {
    if (c == 8) continue;
    EXPECT_EQ(s1p2_encode(s1p2_decode(c)), c);
  }
  EXPECT_EQ(s1p2_decode(s1p2_encode(0.125f)), 0.0f);  // m = 0.5 -> 0 (even)
  EXPECT_EQ(s1p2_decode(s1p2_encode(0.375f)), 0.5f);  // m = 1.5 -> 2
  EXPECT_EQ(s1p2_decode(s1p2_encode(0.625f)), 0.5f);  // m = 2.5 -> 2
  EXPECT_EQ(s1p2_decode(s1p2_encode(1.625f)), 1.5f);  // m = 6.5 -> 6
  EXPECT_EQ(s1p2_decode(s1p2_encode(1.8f)), 1.75f);   // saturates
  EXPECT_EQ(s1p2_decode(s1p2_encode(-100.0f)), -1.75f);
}

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(bf16_round(1.0f), 1.0f);
  EXPECT_EQ(bf16_round(std::bit_cast<float>(0x3F808000u)), 1.0f);  // tie -> even
  EXPECT_EQ(bf16_round(std::bit_cast<float>(0x3F818000u)), std::bit_cast<float>(0x3F820000u));
  EXPECT_EQ(bf16_round(std::bit_cast<float>(0x3F808001u)), std::bit_cast<float>(0x3F810000u));
}

}  // namespace
}  // namespace sharq
