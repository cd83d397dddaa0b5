// Device-side E2M1 / UE4M3 codecs and the NVFP4 block quantizer, bit-identical to the CPU
// reference (codecs.h, nvfp4.cpp): IEEE-rounded intrinsics only, so no FMA contraction and no
// approximate division can creep in. sm_90 has no FP4 convert instruction: encode is a
// compare chain, decode builds the float's bits. Not a GEMM.
#pragma once

#include <cstdint>

namespace sharq::cuda {

// Magnitude index 0..7 of RNE(|a|) on the E2M1 grid (ties to even, saturating at 6).
__device__ __forceinline__ uint32_t e2m1_index(float a) {
  return (a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) + (a >= 3.5f) +
         (a > 5.0f);
}

// 4-bit code of x (sign kept, like the CPU encoder).
__device__ __forceinline__ uint32_t e2m1_encode(float x) {
  return e2m1_index(fabsf(x)) | ((__float_as_uint(x) >> 28) & 0x8u);
}

// Value of a 4-bit code: index e.m -> m * 0.5 (e = 0) or (1 + m/2) * 2^(e-1).
__device__ __forceinline__ float e2m1_decode(uint32_t code) {
  const uint32_t e = (code >> 1) & 0x3u, m = code & 0x1u;
  const uint32_t mag = e ? ((e + 126u) << 23) | (m << 22) : (m ? 0x3F000000u : 0u);
  return __uint_as_float(mag | ((code & 0x8u) << 28));
}

// E4M3 code of x: RNE, saturating to 448 (same bit steps as the CPU e4m3_encode).
__device__ __forceinline__ uint32_t e4m3_encode(float x) {
  const uint32_t sign = (__float_as_uint(x) >> 24) & 0x80u;
  const float a = fabsf(x);
  if (a < 0.015625f) return sign | static_cast<uint32_t>(__float2int_rn(__fmul_rn(a, 512.0f)));
  if (a >= 464.0f) return sign | 0x7Eu;
  uint32_t bits = __float_as_uint(a);
  bits += 0x7FFFFu + ((bits >> 20) & 1u);
  bits &= ~0xFFFFFu;
  const uint32_t code = (((bits >> 23) - 120u) << 3) | ((bits >> 20) & 0x7u);
  return sign | (code > 0x7Eu ? 0x7Eu : code);
}

// Value of a non-negative E4M3 code below 0x7F (UE4M3 block scales).
__device__ __forceinline__ float ue4m3_decode(uint32_t code) {
  const uint32_t e = (code >> 3) & 0xFu, m = code & 0x7u;
  if (e == 0) return __fmul_rn(static_cast<float>(m), 0.001953125f);  // m * 2^-9, exact
  return __uint_as_float(((e + 120u) << 23) | (m << 20));
}

// NVFP4 block of G scaled values (SPEC 3 steps 2-4): writes G/2 code bytes (element 2i in the
// low nibble) and the UE4M3 scale code; deq[i] = E2M1^-1(q_i) * S.
template <int G>
__device__ __forceinline__ void nvfp4_block(const float* v, uint8_t* codes, uint8_t* scale,
                                            float* deq) {
  float m = 0.0f;
#pragma unroll
  for (int i = 0; i < G; ++i) m = fmaxf(m, fabsf(v[i]));
  const float s = fminf(fmaxf(__fdiv_rn(m, 6.0f), 0x1p-9f), 448.0f);
  const uint32_t sc = e4m3_encode(s);
  const float S = ue4m3_decode(sc);
  const float r = __frcp_rn(S);
  *scale = static_cast<uint8_t>(sc);
#pragma unroll
  for (int i = 0; i < G; i += 2) {
    const uint32_t q0 = e2m1_encode(__fmul_rn(v[i], r));
    const uint32_t q1 = e2m1_encode(__fmul_rn(v[i + 1], r));
    codes[i / 2] = static_cast<uint8_t>(q0 | (q1 << 4));
    deq[i] = __fmul_rn(e2m1_decode(q0), S);
    deq[i + 1] = __fmul_rn(e2m1_decode(q1), S);
  }
}

// SPEC 4 ranking: bit p set for the two kept candidates of s[0..3] (ties: lower index wins).
__device__ __forceinline__ uint32_t keep_two_of_four(float s0, float s1, float s2, float s3) {
  const int c01 = s0 >= s1, c02 = s0 >= s2, c03 = s0 >= s3;
  const int c12 = s1 >= s2, c13 = s1 >= s3, c23 = s2 >= s3;
  return ((3 - c01 - c02 - c03) < 2) | (((c01 + 2 - c12 - c13) < 2) << 1) |
         (((c02 + c12 + 1 - c23) < 2) << 2) | (((c03 + c13 + c23) < 2) << 3);
}

}  // namespace sharq::cuda
