// Device helpers shared by the FP16 tensor-core GEMMs and the weight / activation decodes: the
// E2M1 x 8 -> FP16 x 2 decode trick, the UE4M3 scale as an FP16 pair or a float, the exact FP16
// pair scaling and the mma.sync m16n8k16 wrapper.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace sharq::cuda {

// The FP16 high bytes of 8 E2M1 codes (element i in nibble i). An E2M1 code times 2^-14 as an
// FP16 (sign to bit 15, exponent and mantissa to bits 11..9, so exponent field 0 lands in FP16
// subnormals exactly as E2M1's subnormal 0.5 does) has a zero low byte, so its high byte,
// sign << 7 | (exponent, mantissa) << 1, is all a decode builds: lo holds it for the low nibble
// of each byte of w, hi for the high nibble. Byte permutes then place the pairs (next).
__device__ __forceinline__ void e2m1x8_high_bytes(uint32_t w, uint32_t& lo, uint32_t& hi) {
  lo = ((w << 4) & 0x80808080u) | ((w << 1) & 0x0E0E0E0Eu);
  hi = (w & 0x80808080u) | ((w >> 3) & 0x0E0E0E0Eu);
}

// Four FP16 pairs from 8 E2M1 nibbles in SPEC order (the activations' codes; the weights' decode
// is e2m1x8_stored_to_f16x2, below), pair j = (nibble j, nibble j + 4), each half the code's
// value times 2^-14 (2^14 returns in the epilogue). Pair j's nibbles sit in bytes j / 2 and
// j / 2 + 2, both low or both high, so one byte permute places the two high bytes next to zero
// bytes. 11 integer operations per 8 codes where masking each pair in place took 15 (SASS of the
// M = 1 product: 188 -> 156 instructions a window); the integer ALU pipe, which issues at half
// rate, runs 9 of them instead of about 10 (the left shifts go to the multiply pipe as IMAD.SHL).
__device__ __forceinline__ void e2m1x8_to_f16x2(uint32_t w, uint32_t (&h)[4]) {
  uint32_t lo, hi;
  e2m1x8_high_bytes(w, lo, hi);
  // __byte_perm(a, 0, s): result byte i = byte (s >> 4i) & 7 of 0:a (selector 4 is a zero byte).
  h[0] = __byte_perm(lo, 0u, 0x2404u);  // 0, lo.0, 0, lo.2: nibbles 0 and 4
  h[1] = __byte_perm(hi, 0u, 0x2404u);  // nibbles 1 and 5
  h[2] = __byte_perm(lo, 0u, 0x3414u);  // 0, lo.1, 0, lo.3: nibbles 2 and 6
  h[3] = __byte_perm(hi, 0u, 0x3414u);  // nibbles 3 and 7
}

// Four FP16 pairs, natural order (pair j = elements 2j, 2j + 1), from 8 E2M1 codes in SPEC order
// (element i in nibble i: the activations'), each half code x 2^-14, from e2m1x8_high_bytes: one
// byte permute per pair places a lo and a hi byte, taking its zero bytes from lo << 8 (byte 0) or
// hi >> 8 (byte 3). 11 integer operations per 8 codes, none of them multiplies.
__device__ __forceinline__ void e2m1x8_natural(uint32_t w, uint32_t (&h)[4]) {
  uint32_t lo, hi;
  e2m1x8_high_bytes(w, lo, hi);
  const uint32_t lo8 = lo << 8, hi8 = hi >> 8;
  // __byte_perm(a, b, s): result byte i = byte (s >> 4i) & 7 of the 8 bytes b:a.
  h[0] = __byte_perm(lo8, hi, 0x4010);  // 0, lo.0, 0, hi.0
  h[1] = __byte_perm(lo8, hi, 0x5020);  // 0, lo.1, 0, hi.1
  h[2] = __byte_perm(lo8, hi, 0x6030);  // 0, lo.2, 0, hi.2
  h[3] = __byte_perm(lo, hi8, 0x6737);  // 0 (hi8.3), lo.3, 0, hi.3 (hi8.2)
}

// The three images a weight code word in the stored bit order (weight_layout.h,
// stored_code_word: the tiled weights are kept that way) decodes through: elements 0 and 4 are
// already where their FP16 pair (code x 2^-14) wants them, so r04 is one mask; 1 and 5 sit a byte
// lower, so r15 is a shift and a mask; 2, 3, 6, 7 each have their sign in bit 0 and magnitude in
// bits 4-6 of a byte, so two shifts and two masks make z, their four FP16 high bytes. Bytes 0
// and 2 of r04 and r15 are zero.
__device__ __forceinline__ void e2m1x8_stored_images(uint32_t s, uint32_t& r04, uint32_t& r15,
                                                     uint32_t& z) {
  r04 = s & 0x8E008E00u;
  r15 = (s << 8) & 0x8E008E00u;
  z = ((s << 7) & 0x80808080u) | ((s >> 3) & 0x0E0E0E0Eu);
}

// The pairs of e2m1x8_to_f16x2 (j, j + 4) from a stored weight word, in 9 integer operations
// instead of 11: the images, then two byte permutes place z's bytes. The integer ALU pipe runs 7
// of the 9 (the two left shifts go to the multiply pipe).
__device__ __forceinline__ void e2m1x8_stored_to_f16x2(uint32_t s, uint32_t (&h)[4]) {
  uint32_t z;
  e2m1x8_stored_images(s, h[0], h[1], z);
  h[2] = __byte_perm(z, 0u, 0x2404u);  // 0, z.0, 0, z.2: elements 2 and 6
  h[3] = __byte_perm(z, 0u, 0x3414u);  // 0, z.1, 0, z.3: elements 3 and 7
}

// Natural pairs (pair j = elements 2j, 2j + 1) from a stored weight word: the same images, four
// byte permutes (whose zero bytes come from the images' own zero bytes 0 and 2).
__device__ __forceinline__ void e2m1x8_stored_natural(uint32_t s, uint32_t (&h)[4]) {
  uint32_t r04, r15, z;
  e2m1x8_stored_images(s, r04, r15, z);
  // __byte_perm(a, b, s): result byte i = byte (s >> 4i) & 7 of the 8 bytes b:a.
  h[0] = __byte_perm(r04, r15, 0x5210u);  // 0, r04.1, 0, r15.1: elements 0, 1
  h[1] = __byte_perm(z, 0u, 0x1404u);     // 0, z.0, 0, z.1: elements 2, 3
  h[2] = __byte_perm(r04, r15, 0x7230u);  // 0, r04.3, 0, r15.3: elements 4, 5
  h[3] = __byte_perm(z, 0u, 0x3424u);     // 0, z.2, 0, z.3: elements 6, 7
}

// The UE4M3 scale (code & 0x7F, as ue4m3_decode reads it) in both halves, exact. code << 7 is the
// FP16 whose exponent field is E4M3's exponent and whose mantissa starts with E4M3's 3 bits: 2^-8
// times the scale, FP16 subnormals covering E4M3's (m x 2^-9 -> m x 2^-17); one multiply by 2^8
// (exact) finishes it. Two instructions where ue4m3_decode + a conversion took a dozen, with
// branches, for every scale of every weight window.
__device__ __forceinline__ __half2 scale_h2(uint32_t code) {
  const uint32_t bits = (code & 0x7Fu) * 0x00800080u;  // code << 7 in both halves
  return __hmul2(*reinterpret_cast<const __half2*>(&bits), __float2half2_rn(256.0f));
}

// Two UE4M3 scales (bytes 0 and 1 of `pair`) as an FP16 pair (byte 0 in the low half), exact, in
// one hardware conversion (F2FP): FP16 holds every E4M3 value, subnormals included. Reads the
// bytes as E4M3, so bit 7 must be clear: the packer's scales are in [2^-9, 448] (SPEC 3), codes
// 0x01-0x7E, never a sign or the NaN code.
__device__ __forceinline__ __half2 ue4m3x2_to_half2(uint32_t pair) {
  uint32_t h;
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h) : "h"(static_cast<unsigned short>(pair)));
  return *reinterpret_cast<const __half2*>(&h);
}

__device__ __forceinline__ uint32_t hmul2_u32(uint32_t a, __half2 s) {
  __half2 v = *reinterpret_cast<__half2*>(&a);
  v = __hmul2(v, s);  // exact: E2M1 x UE4M3 x 2^-14 has <= 6 significant bits and is >= 2^-24
  return *reinterpret_cast<uint32_t*>(&v);
}

// An FP16 pair of E2M1 x UE4M3 values times `up` (a power of two) as a BF16 pair: exact, since the
// values have at most 6 significant bits and BF16 keeps 8 and FP16's whole exponent range.
__device__ __forceinline__ uint32_t f16x2_to_bf16x2(uint32_t h, float up) {
  float2 f = __half22float2(*reinterpret_cast<__half2*>(&h));
  f.x *= up;
  f.y *= up;
  const __nv_bfloat162 b = __float22bfloat162_rn(f);
  return *reinterpret_cast<const uint32_t*>(&b);
}

__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace sharq::cuda
