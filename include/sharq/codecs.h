// Element and scale codecs of SPEC.md section 2: E2M1, E4M3/UE4M3, E8M0, E6M2, S1P2, BF16.
// Scalar reference code, inline because every quantizer's inner loop calls it. Not SIMD.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace sharq {

// ---- E2M1 (FP4): s.ee.m, bias 1. Codes 0-7 positive, 8-15 negative (bit 3 = sign). ----
inline constexpr float kE2M1Values[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

// Returns the magnitude index 0..7 of RNE(|x|) on the E2M1 grid, saturating at 6.
// Thresholds are the midpoints; ties go to the even mantissa (0.25->0, 0.75->1, 1.25->1,
// 1.75->2, 2.5->2, 3.5->4, 5->4), hence the alternating > and >=.
inline uint8_t e2m1_magnitude_index(float a) {
  return static_cast<uint8_t>((a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) +
                              (a >= 3.5f) + (a > 5.0f));
}

// Returns the 4-bit E2M1 code of x (finite), RNE, saturating; the sign is kept (-0.1 -> 0x8).
inline uint8_t e2m1_encode(float x) {
  const uint8_t sign = std::signbit(x) ? 0x8 : 0x0;
  return static_cast<uint8_t>(sign | e2m1_magnitude_index(std::fabs(x)));
}

inline float e2m1_decode(uint8_t code) {
  const float m = kE2M1Values[code & 0x7];
  return (code & 0x8) ? -m : m;
}

// Quantizes N values x[i] * r to E2M1 (RNE, saturating, sign kept): packed codes (element 2i
// in the low nibble) and, when deq is not null, deq[i] = E2M1^-1(code) * back. The same
// decisions as e2m1_encode / e2m1_decode, written as compare sums without table lookups so
// the compiler vectorizes it (the block formats' hot loop).
template <int N>
inline void e2m1_quantize_block(const float* x, float r, float back, uint8_t* packed, float* deq) {
  static_assert(N % 2 == 0, "codes are packed in pairs");
  int32_t q[N];
  float d[N];
  for (int i = 0; i < N; ++i) {
    const float v = x[i] * r;
    const float a = std::fabs(v);
    const bool t0 = a > 0.25f, t1 = a >= 0.75f, t2 = a > 1.25f, t3 = a >= 1.75f, t4 = a > 2.5f,
               t5 = a >= 3.5f, t6 = a > 5.0f;
    q[i] = (t0 + t1 + t2 + t3 + t4 + t5 + t6) | (std::signbit(v) ? 8 : 0);
    const float mag = (t0 ? 0.5f : 0.0f) + (t1 ? 0.5f : 0.0f) + (t2 ? 0.5f : 0.0f) +
                      (t3 ? 0.5f : 0.0f) + (t4 ? 1.0f : 0.0f) + (t5 ? 1.0f : 0.0f) +
                      (t6 ? 2.0f : 0.0f);
    d[i] = std::copysign(mag, v) * back;
  }
  for (int i = 0; i < N; i += 2) packed[i / 2] = static_cast<uint8_t>(q[i] | (q[i + 1] << 4));
  if (deq) {
    for (int i = 0; i < N; ++i) deq[i] = d[i];
  }
}

// Returns max |x[i]| over N values (N a multiple of 8), in lanes so that it vectorizes.
template <int N>
inline float absmax_block(const float* x) {
  static_assert(N % 8 == 0, "eight lanes");
  float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < N; i += 8) {
    for (int l = 0; l < 8; ++l)
      lanes[l] = lanes[l] < std::fabs(x[i + l]) ? std::fabs(x[i + l]) : lanes[l];
  }
  float m = 0.0f;
  for (float v : lanes) m = m < v ? v : m;
  return m;
}

// ---- E4M3 ("e4m3fn"): s.eeee.mmm, bias 7, max 448, subnormals k*2^-9, S.1111.111 = NaN. ----
// Returns the E4M3 code of x (finite), RNE, saturating to +-448.
inline uint8_t e4m3_encode(float x) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  const float a = std::fabs(x);
  if (a < 0.015625f) {  // below 2^-6: subnormal grid k * 2^-9; k = 8 is 2^-6 (code 0x08)
    const float k = std::nearbyint(a * 512.0f);  // exact scaling, RNE
    return static_cast<uint8_t>(sign | static_cast<uint8_t>(k));
  }
  if (a >= 464.0f) return static_cast<uint8_t>(sign | 0x7E);  // 464 ties to 448 (even)
  // Keep 3 mantissa bits with RNE on the float32 bit pattern; a carry moves into the exponent.
  uint32_t bits = std::bit_cast<uint32_t>(a);
  bits += 0x7FFFFu + ((bits >> 20) & 1u);
  bits &= ~0xFFFFFu;
  const uint32_t exp = (bits >> 23) - 127 + 7;
  const uint32_t man = (bits >> 20) & 0x7u;
  uint32_t code = (exp << 3) | man;
  if (code > 0x7E) code = 0x7E;  // values in (448, 464) round to 448 anyway; 480 would be NaN
  return static_cast<uint8_t>(sign | code);
}

// Returns the float value of an E4M3 code; 0x7F / 0xFF decode to NaN.
float e4m3_decode(uint8_t code);

// UE4M3 (NVFP4 block scale) is E4M3 with the sign bit 0; callers pass non-negative values.
inline uint8_t ue4m3_encode(float x) {
  return e4m3_encode(x);
}
inline float ue4m3_decode(uint8_t code) {
  return e4m3_decode(code);
}

// ---- E8M0: 2^(e-127), 0xFF = NaN. ----
// Returns the code of 2^e for e in [-127, 127].
inline uint8_t e8m0_encode_exponent(int e) {
  return static_cast<uint8_t>(e + 127);
}
inline float e8m0_decode(uint8_t code) {
  if (code == 0xFF) return std::nanf("");
  return std::ldexp(1.0f, static_cast<int>(code) - 127);
}

// ---- E6M2 (HiF4 level-1 scale): 6-bit exponent bias 48, 2-bit mantissa, hidden 1. ----
// Code = (E + 48) << 2 | M; value 2^E * (1 + M/4); E in [-48, 15]; 0xFF = NaN.
inline constexpr float kE6M2Min = 0x1p-48f;
inline constexpr float kE6M2Max = 0x1.8p15f;  // 1.5 * 2^15, code 0xFE

// Returns the E6M2 code of x (finite, >= 0): RNE on the mantissa with carry, then clamped to
// [2^-48, 1.5 * 2^15]. Rounding is monotone and both bounds are on the grid, so clamping
// before or after rounding gives the same code.
inline uint8_t e6m2_encode(float x) {
  if (!(x > kE6M2Min)) return 0x00;  // also catches tiny and zero inputs
  if (x >= kE6M2Max) return 0xFE;
  uint32_t bits = std::bit_cast<uint32_t>(x);
  bits += 0xFFFFFu + ((bits >> 21) & 1u);
  bits &= ~0x1FFFFFu;
  const int e = static_cast<int>(bits >> 23) - 127;
  const uint32_t m = (bits >> 21) & 0x3u;
  if (e > 15 || (e == 15 && m > 2)) return 0xFE;
  return static_cast<uint8_t>((static_cast<uint32_t>(e + 48) << 2) | m);
}
inline float e6m2_decode(uint8_t code) {
  if (code == 0xFF) return std::nanf("");
  const int e = static_cast<int>(code >> 2) - 48;
  return std::ldexp(1.0f + static_cast<float>(code & 0x3) * 0.25f, e);
}

// ---- S1P2 (HiF4 element): sign-magnitude, m * 0.25 for m = 0..7 (max 1.75). ----
inline uint8_t s1p2_encode(float x) {
  const uint8_t sign = std::signbit(x) ? 0x8 : 0x0;
  float k = std::nearbyint(std::fabs(x) * 4.0f);  // exact scaling, RNE: ties to even m
  if (k > 7.0f) k = 7.0f;
  return static_cast<uint8_t>(sign | static_cast<uint8_t>(k));
}
inline float s1p2_decode(uint8_t code) {
  const float m = static_cast<float>(code & 0x7) * 0.25f;
  return (code & 0x8) ? -m : m;
}

// ---- BF16: the activation dtype of the reference mode. ----
// Returns x rounded to bfloat16 (RNE) and widened back to float32 (x finite).
inline float bf16_round(float x) {
  uint32_t bits = std::bit_cast<uint32_t>(x);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  bits &= 0xFFFF0000u;
  return std::bit_cast<float>(bits);
}

// ---- FP16 (IEEE binary16): the Hopper tensor cores' input. Written out rather than through
// _Float16, which not every compiler of the project supports on x86 (clang 14). ----
// x rounded to FP16, RNE, as its bit pattern; |x| >= 65520 gives infinity, NaN a quiet NaN.
inline uint16_t f16_bits(float x) {
  const uint32_t b = std::bit_cast<uint32_t>(x);
  const auto sign = static_cast<uint16_t>((b >> 16) & 0x8000u);
  const uint32_t a = b & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u);
  if (a >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds past 65504
  if (a < 0x38800000u) {  // below 2^-14: a multiple of 2^-24 (x * 2^24 is exact)
    const float q = std::nearbyint(std::bit_cast<float>(a) * 16777216.0f);  // RNE
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(q));          // 1024 is 2^-14, normal
  }
  const uint32_t m = a - 0x38000000u;  // exponent rebiased from 127 to 15
  return static_cast<uint16_t>(sign | ((m + 0xFFFu + ((m >> 13) & 1u)) >> 13));  // RNE, carry
}
// The value of an FP16 bit pattern.
inline float f16_value(uint16_t h) {
  const uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  float v;
  if (e == 0) {
    v = std::ldexp(static_cast<float>(m), -24);
  } else if (e == 31) {
    v = m ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else {
    v = std::bit_cast<float>(((e + 112u) << 23) | (m << 13));
  }
  return (h & 0x8000u) ? -v : v;
}

// The correctly rounded float32 reciprocal, SPEC section 1 "rcp".
inline float rcp(float s) {
  return 1.0f / s;
}

}  // namespace sharq
