// GPU tests of the device codecs (src/cuda/codecs.cuh, fp4_decode.cuh) on every float32 or packed
// word they can see: the one-add E2M1 quantizer, the division by 6, the hardware UE4M3
// block-scale encode and the GEMMs' FP4 weight and scale decodes against the SPEC 2 definitions
// written the slow way here (the midpoint compare chain, IEEE division, E4M3 rounding on the bit
// pattern), and against CUDA's own FP4 conversions as a second oracle. The prepare tests
// (test_cuda_kernels.cu) then check whole blocks against the CPU reference.
#include <cuda_fp4.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "codecs.cuh"
#include "cuda_test_util.cuh"
#include "fp4_decode.cuh"
#include "sharq/cuda/weight_layout.h"

namespace sharq::cuda {
namespace {

// SPEC 2's E2M1 rule as the CPU writes it (codecs.h): midpoints, ties to the even mantissa.
__device__ uint32_t e2m1_by_midpoints(float y) {
  const float a = fabsf(y);
  const uint32_t index = (a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) +
                         (a >= 3.5f) + (a > 5.0f);
  return index | ((__float_as_uint(y) >> 28) & 0x8u);
}

// SPEC 2's E4M3 rule (RNE on the bit pattern, subnormals k 2^-9, saturating to 448) for a >= 0.
__device__ uint32_t e4m3_by_bits(float a) {
  if (a < 0.015625f) return static_cast<uint32_t>(__float2int_rn(__fmul_rn(a, 512.0f)));
  if (a >= 464.0f) return 0x7Eu;
  uint32_t bits = __float_as_uint(a);
  bits += 0x7FFFFu + ((bits >> 20) & 1u);
  bits &= ~0xFFFFFu;
  const uint32_t code = (((bits >> 23) - 120u) << 3) | ((bits >> 20) & 0x7u);
  return code > 0x7Eu ? 0x7Eu : code;
}

// Counts of disagreements and the first bit pattern that disagreed (0xFFFFFFFF if none).
struct Tally {
  unsigned long long wrong;
  uint32_t first;
};

__device__ void record(Tally* t, uint32_t bits) {
  atomicAdd(&t->wrong, 1ull);
  atomicMin(&t->first, bits);
}

// Every finite float y, both signs: code and value of e2m1_round against the compare chain,
// e2m1_decode and CUDA's __nv_cvt_float_to_fp4.
__global__ void e2m1_round_every_float(Tally* t) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < 0xFF000000ull;
       i += stride) {
    const uint32_t bits =
        static_cast<uint32_t>(i < 0x7F800000ull ? i : i - 0x7F800000ull + 0x80000000ull);
    const float y = __uint_as_float(bits);
    float value;
    const uint32_t code = e2m1_nibble(e2m1_round(y, value), y, 0);
    // The nibble in place 7 of a packed word is the same code.
    if (e2m1_nibble(e2m1_round(y, value), y, 7) != code << 28) record(t, bits);
    const uint32_t want = e2m1_by_midpoints(y);
    const uint32_t cuda = __nv_cvt_float_to_fp4(y, __NV_E2M1, cudaRoundNearest) & 0xFu;
    if (code != want || cuda != want ||
        __float_as_uint(value) != __float_as_uint(e2m1_decode(want)))
      record(t, bits);
  }
}

// Every finite m >= 0: div6 against IEEE division from 2^-125 on, and the scale code against
// the clamp and the bit-pattern E4M3 rounding everywhere.
__global__ void scale_code_every_float(Tally* div, Tally* scale) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < 0x7F800000ull;
       i += stride) {
    const uint32_t bits = static_cast<uint32_t>(i);
    const float m = __uint_as_float(bits);
    const float q = __fdiv_rn(m, 6.0f);
    if (m >= 0x1p-125f && __float_as_uint(div6(m)) != __float_as_uint(q)) record(div, bits);
    if (nvfp4_scale_code(m) != e4m3_by_bits(fminf(fmaxf(q, 0x1p-9f), 448.0f))) record(scale, bits);
  }
}

// Every UE4M3 block-scale code the quantizer can produce (1..126: the scale is clamped to
// [2^-9, 448]): ue4m3_value against the bit-built ue4m3_decode, scale_rcp against __frcp_rn.
__global__ void scale_codes_every_code(Tally* value, Tally* rcp) {
  const uint32_t code = threadIdx.x + 1;
  if (code > 126) return;
  const float S = ue4m3_decode(code);
  if (__float_as_uint(ue4m3_value(code)) != __float_as_uint(S)) record(value, code);
  if (__float_as_uint(scale_rcp(S)) != __float_as_uint(__frcp_rn(S))) record(rcp, code);
}

// The UE4M3 scale in byte J of `word` (code & 0x7F, as ue4m3_decode reads it) as a float, exact:
// code << 20 puts E4M3's exponent and mantissa bits where float's are, 2^-120 times the value
// (E4M3's subnormals land on float subnormals, which these builds keep: no fast math). The M = 1
// product's scale decode until session 27 (now ue4m3x2_to_half2); kept here as a second oracle.
template <int J>
__device__ __forceinline__ float ue4m3_byte(uint32_t word) {
  const uint32_t bits = (J <= 2 ? word << (20 - 8 * J) : word >> 4) & 0x07F00000u;
  return __uint_as_float(bits) * 0x1p120f;
}

// Every byte (the top bit ignored, as ue4m3_decode ignores it): the GEMMs' two-instruction scale
// decode scale_h2 (both FP16 halves) and the bit-placing ue4m3_byte (the code in each byte of a
// word), against ue4m3_decode.
__global__ void gemm_scale_decodes_every_byte(Tally* h2, Tally* byte) {
  const uint32_t code = threadIdx.x;
  const float S = ue4m3_decode(code);
  const float2 h = __half22float2(scale_h2(code));
  if (__float_as_uint(h.x) != __float_as_uint(S) || __float_as_uint(h.y) != __float_as_uint(S))
    record(h2, code);
  const uint32_t word = code * 0x01010101u;
  const float b[4] = {ue4m3_byte<0>(word), ue4m3_byte<1>(word), ue4m3_byte<2>(word),
                      ue4m3_byte<3>(word)};
  for (float v : b) {
    if (__float_as_uint(v) != __float_as_uint(S)) record(byte, code);
  }
}

// Every pair of stored block-scale codes (0..126 each, bit 7 clear: the packer's scales are in
// [2^-9, 448], and 0 is added for the edge): ue4m3x2_to_half2, the hardware E4M3 pair conversion
// the M = 1 product applies its scales with, against ue4m3_decode for each half, and against
// ue4m3_byte (the form it replaced) on the same pair.
__global__ void scale_pair_conversion_every_pair(Tally* vs_decode, Tally* vs_byte) {
  const uint32_t lo = blockIdx.x, hi = threadIdx.x;
  if (lo > 126 || hi > 126) return;
  const uint32_t pair = lo | (hi << 8);
  const float2 f = __half22float2(ue4m3x2_to_half2(pair));
  if (__float_as_uint(f.x) != __float_as_uint(ue4m3_decode(lo)) ||
      __float_as_uint(f.y) != __float_as_uint(ue4m3_decode(hi)))
    record(vs_decode, pair);
  if (__float_as_uint(f.x) != __float_as_uint(ue4m3_byte<0>(pair)) ||
      __float_as_uint(f.y) != __float_as_uint(ue4m3_byte<1>(pair)))
    record(vs_byte, pair);
}

// Every 32-bit word of 8 E2M1 codes: the GEMMs' weight decode (e2m1x8_to_f16x2, pair j =
// nibbles j and j + 4, each half the code's value times 2^-14) against e2m1_decode and against
// CUDA's own FP4 -> FP16 conversion scaled by 2^-14 (exact: the smallest value becomes 2^-15).
__global__ void weight_decode_every_word(Tally* vs_codec, Tally* vs_cuda) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  const __half2 down = __float2half2_rn(0x1p-14f);
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x;
       i < 0x100000000ull; i += stride) {
    const uint32_t w = static_cast<uint32_t>(i);
    uint32_t h[4];
    e2m1x8_to_f16x2(w, h);
    for (int j = 0; j < 4; ++j) {
      const uint32_t a = (w >> (4 * j)) & 0xFu, b = (w >> (4 * j + 16)) & 0xFu;
      const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h[j]));
      if (__float_as_uint(f.x) != __float_as_uint(e2m1_decode(a) * 0x1p-14f) ||
          __float_as_uint(f.y) != __float_as_uint(e2m1_decode(b) * 0x1p-14f))
        record(vs_codec, w);
      const __half2_raw raw =
          __nv_cvt_fp4x2_to_halfraw2(static_cast<__nv_fp4x2_storage_t>(a | (b << 4)), __NV_E2M1);
      const __half2 want = __hmul2(*reinterpret_cast<const __half2*>(&raw), down);
      if (*reinterpret_cast<const uint32_t*>(&want) != h[j]) record(vs_cuda, w);
    }
  }
}

// Every 32-bit word of 8 E2M1 codes in SPEC order, stored the way the tiled weights keep it
// (weight_layout.h, stored_code_word): the weight GEMMs' decodes of the stored word give the
// same FP16 pairs as the SPEC-order decode and as e2m1_decode (pairs j, j + 4 and natural pairs
// 2j, 2j + 1), and spec_code_word undoes the store.
__global__ void stored_weight_decode_every_word(Tally* pairs, Tally* natural) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x;
       i < 0x100000000ull; i += stride) {
    const uint32_t w = static_cast<uint32_t>(i);
    const uint32_t s = weight_layout::stored_code_word(w);
    uint32_t want[4], got[4], nat[4];
    e2m1x8_to_f16x2(w, want);
    e2m1x8_stored_to_f16x2(s, got);
    e2m1x8_stored_natural(s, nat);
    bool ok = weight_layout::spec_code_word(s) == w;
    for (int j = 0; j < 4; ++j) ok = ok && got[j] == want[j];
    if (!ok) record(pairs, w);
    for (int j = 0; j < 4; ++j) {
      const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&nat[j]));
      const uint32_t a = (w >> (8 * j)) & 0xFu, b = (w >> (8 * j + 4)) & 0xFu;
      if (__float_as_uint(f.x) != __float_as_uint(e2m1_decode(a) * 0x1p-14f) ||
          __float_as_uint(f.y) != __float_as_uint(e2m1_decode(b) * 0x1p-14f))
        record(natural, w);
    }
  }
}

// One launch of a codec kernel with two clean tallies; both tallies after it.
std::vector<Tally> run_tallies(void (*launch)(Tally*, Tally*)) {
  test_util::DeviceBuf<Tally> t(2);
  const Tally clean{0, 0xFFFFFFFFu};
  t.upload(std::vector<Tally>{clean, clean});
  launch(t.p, t.p + 1);
  check(cudaGetLastError(), "codec kernel");
  check(cudaDeviceSynchronize(), "codec kernel");
  return t.download();
}

Tally run_tally(void (*launch)(Tally*, Tally*), int which) {
  return run_tallies(launch)[which];
}

// Expects both tallies of one launch clean; what0 / what1 begin their failure messages, which
// end with the first wrong input in hex.
void expect_both_clean(void (*launch)(Tally*, Tally*), const char* what0, const char* what1) {
  const std::vector<Tally> t = run_tallies(launch);
  EXPECT_EQ(t[0].wrong, 0u) << what0 << " 0x" << std::hex << t[0].first;
  EXPECT_EQ(t[1].wrong, 0u) << what1 << " 0x" << std::hex << t[1].first;
}

TEST(CudaCodecs, E2m1RoundMatchesTheMidpointRuleOnEveryFloat) {
  const Tally t = run_tally([](Tally* a, Tally*) { e2m1_round_every_float<<<1056, 256>>>(a); }, 0);
  EXPECT_EQ(t.wrong, 0u) << "first disagreement at float bits 0x" << std::hex << t.first;
}

TEST(CudaCodecs, Div6IsIeeeDivisionOnEveryFloat) {
  const Tally t =
      run_tally([](Tally* a, Tally* b) { scale_code_every_float<<<1056, 256>>>(a, b); }, 0);
  EXPECT_EQ(t.wrong, 0u) << "first disagreement at float bits 0x" << std::hex << t.first;
}

TEST(CudaCodecs, ScaleCodeMatchesClampThenE4m3OnEveryFloat) {
  const Tally t =
      run_tally([](Tally* a, Tally* b) { scale_code_every_float<<<1056, 256>>>(a, b); }, 1);
  EXPECT_EQ(t.wrong, 0u) << "first disagreement at float bits 0x" << std::hex << t.first;
}

TEST(CudaCodecs, ScaleValueAndReciprocalOnEveryCode) {
  expect_both_clean([](Tally* a, Tally* b) { scale_codes_every_code<<<1, 128>>>(a, b); },
                    "first wrong value at code", "first wrong reciprocal at code");
}

TEST(CudaCodecs, GemmScaleDecodesOnEveryByte) {
  expect_both_clean([](Tally* a, Tally* b) { gemm_scale_decodes_every_byte<<<1, 256>>>(a, b); },
                    "scale_h2: first wrong code", "ue4m3_byte: first wrong code");
}

TEST(CudaCodecs, WeightDecodeOnEveryWord) {
  expect_both_clean([](Tally* a, Tally* b) { weight_decode_every_word<<<1056, 256>>>(a, b); },
                    "vs e2m1_decode: first wrong word", "vs CUDA's conversion: first wrong word");
}

TEST(CudaCodecs, ScalePairConversionOnEveryStoredPair) {
  expect_both_clean(
      [](Tally* a, Tally* b) { scale_pair_conversion_every_pair<<<128, 128>>>(a, b); },
      "vs ue4m3_decode: first wrong pair", "vs ue4m3_byte: first wrong pair");
}

TEST(CudaCodecs, StoredWeightDecodeOnEveryWord) {
  expect_both_clean(
      [](Tally* a, Tally* b) { stored_weight_decode_every_word<<<1056, 256>>>(a, b); },
      "pairs j, j + 4: first wrong word", "natural pairs: first wrong word");
}

}  // namespace
}  // namespace sharq::cuda
