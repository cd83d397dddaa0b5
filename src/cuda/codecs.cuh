// Device-side E2M1 / UE4M3 codecs and the NVFP4 block quantizer, bit-identical to the CPU
// reference (codecs.h, nvfp4.cpp): IEEE-rounded intrinsics only, so no FMA contraction and no
// approximate division can creep in. sm_90 has no FP4 convert instruction: the quantizer rounds
// onto the E2M1 grid with one float add (e2m1_round), decode builds the float's bits. The hot
// path is issue-bound (docs/RESULTS.md, issue 5), so each step is the fewest exact instructions;
// tests/cuda checks every one of them against the compare-chain definitions for every float.
// Not a GEMM.
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

namespace sharq::cuda {

// Value of a 4-bit code: index e.m -> m * 0.5 (e = 0) or (1 + m/2) * 2^(e-1).
__device__ __forceinline__ float e2m1_decode(uint32_t code) {
  const uint32_t e = (code >> 1) & 0x3u, m = code & 0x1u;
  const uint32_t mag = e ? ((e + 126u) << 23) | (m << 22) : (m ? 0x3F000000u : 0u);
  return __uint_as_float(mag | ((code & 0x8u) << 28));
}

// Value of a UE4M3 block-scale code (below 0x7F) by sm_89's FP8 convert; exact, as ue4m3_decode.
__device__ __forceinline__ float ue4m3_value(uint32_t code) {
  return __half2float(
      __half(__nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(code), __NV_E4M3)));
}

// RN(1 / S) for a UE4M3 block scale S (2^-9 .. 448, a normal float): __frcp_rn's own Newton
// step on the approximate reciprocal, without its range check, which S never fails. Checked
// against __frcp_rn for every code in tests/cuda.
__device__ __forceinline__ float scale_rcp(float S) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(S));
  return __fmaf_rn(r, -__fmaf_rn(r, S, -1.0f), r);
}

// Value of a non-negative E4M3 code below 0x7F (UE4M3 block scales).
__device__ __forceinline__ float ue4m3_decode(uint32_t code) {
  const uint32_t e = (code >> 3) & 0xFu, m = code & 0x7u;
  if (e == 0) return __fmul_rn(static_cast<float>(m), 0.001953125f);  // m * 2^-9, exact
  return __uint_as_float(((e + 120u) << 23) | (m << 20));
}

// Magnitude index (0..7) of E2M1(y) for finite y, and y's signed E2M1 value; the code is the
// index and y's sign bit (e2m1_nibble). The grid's spacing is 0.5 below 2, 1 in [2, 4) and 2
// from 4 on; M's ulp is that spacing, so |y| + M is |y| rounded onto the grid, ties to even, in
// one rounding. M's low bits (0, 2, 8) offset the sum so that its bits above M's exponent are
// the index; indices above 7 (|y| >= 7) saturate.
__device__ __forceinline__ uint32_t e2m1_round(float y, float& value) {
  const float a = fabsf(y);
  const float M = a < 2.0f ? 0x1p22f : (a < 4.0f ? 0x1p23f + 2.0f : 0x1p24f + 8.0f);
  const float t = __fadd_rn(a, M);
  value = copysignf(fminf(__fsub_rn(t, M), 6.0f), y);
  return min(__float_as_uint(t) - (__float_as_uint(M) & 0xFF800000u), 7u);
}

// Code of element i of a packed word (nibble i): the index and y's sign bit, shifted in place.
__device__ __forceinline__ uint32_t e2m1_nibble(uint32_t index, float y, int i) {
  return (index << (4 * i)) | ((__float_as_uint(y) >> (28 - 4 * i)) & (8u << (4 * i)));
}

// m / 6 correctly rounded for m >= 2^-125 (below, the result is subnormal and may differ by an
// ulp; nvfp4_scale_code clamps it to 2^-9 either way): the product by RN(1/6), then one exact
// remainder and one correction. Checked for every float in tests/cuda.
__device__ __forceinline__ float div6(float m) {
  constexpr float kSixth = 1.0f / 6.0f;
  const float q = __fmul_rn(m, kSixth);
  return __fmaf_rn(__fmaf_rn(-q, 6.0f, m), kSixth, q);
}

// UE4M3 code of the block scale for block max m >= 0: UE4M3(clamp(m / 6, 2^-9, 448)) (SPEC 3
// step 2). sm_89's FP8 convert is RNE and saturating, as the CPU's e4m3_encode (codecs.h).
__device__ __forceinline__ uint32_t nvfp4_scale_code(float m) {
  const float s = fminf(fmaxf(div6(m), 0x1p-9f), 448.0f);
  return __nv_cvt_float_to_fp8(s, __NV_SATFINITE, __NV_E4M3);
}

// NVFP4 block of G scaled values (SPEC 3 steps 2-4): writes G/2 code bytes (element 2i in the
// low nibble) and the UE4M3 scale code; deq[i] = E2M1^-1(q_i) * S.
template <int G>
__device__ __forceinline__ void nvfp4_block(const float* v, uint8_t* codes, uint8_t* scale,
                                            float* deq) {
  float m = 0.0f;
#pragma unroll
  for (int i = 0; i < G; ++i) m = fmaxf(m, fabsf(v[i]));
  const uint32_t sc = nvfp4_scale_code(m);
  const float S = ue4m3_value(sc);
  const float r = scale_rcp(S);
  *scale = static_cast<uint8_t>(sc);
#pragma unroll
  for (int i = 0; i < G; i += 2) {
    const float y0 = __fmul_rn(v[i], r), y1 = __fmul_rn(v[i + 1], r);
    float e0, e1;
    const uint32_t q0 = e2m1_nibble(e2m1_round(y0, e0), y0, 0);
    const uint32_t q1 = e2m1_nibble(e2m1_round(y1, e1), y1, 1);
    codes[i / 2] = static_cast<uint8_t>(q0 | q1);
    deq[i] = __fmul_rn(e0, S);
    deq[i + 1] = __fmul_rn(e1, S);
  }
}

__device__ __forceinline__ bool majority(bool a, bool b, bool c) {
  return (a & b) | (c & (a | b));
}

// SPEC 4 ranking of four scores: keep[i] for the two kept (ties: the lower index wins). An
// element is dropped when two of the other three beat it (an earlier one by >=, a later one by
// >): the majority of three comparisons, one predicate operation per element.
__device__ __forceinline__ void keep_two_of_four(float s0, float s1, float s2, float s3,
                                                 bool (&keep)[4]) {
  const bool c01 = s0 >= s1, c02 = s0 >= s2, c03 = s0 >= s3;
  const bool c12 = s1 >= s2, c13 = s1 >= s3, c23 = s2 >= s3;
  keep[0] = !majority(!c01, !c02, !c03);
  keep[1] = !majority(c01, !c12, !c13);
  keep[2] = !majority(c02, c12, !c23);
  keep[3] = !majority(c03, c13, c23);
}

}  // namespace sharq::cuda
