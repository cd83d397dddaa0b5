// E2M1 and E4M3 encoders against an independent oracle: the CUDA toolkit's host conversion
// functions (cuda_fp4.hpp / cuda_fp8.hpp) compiled for the CPU. Random values over all binades
// plus every midpoint. Not a GPU test.
#include <cuda_fp16.h>
#include <cuda_fp4.h>
#include <cuda_fp8.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <random>
#include <vector>

#include "sharq/codecs.h"
#include "sharq/decompose.h"
#include "sharq/formats.h"
#include "sharq/merged_operand.h"
#include "sharq/synthetic.h"

namespace sharq {
namespace {

uint8_t oracle_fp4(float x) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp4(x, __NV_E2M1, cudaRoundNearest) & 0xF);
}
uint8_t oracle_fp8(float x) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3));
}

// Random finite floats with uniformly distributed exponent bits (all binades) and mantissas.
float random_float(std::mt19937_64& rng, int min_exp, int max_exp) {
  std::uniform_int_distribution<int> exp_dist(min_exp, max_exp);
  const uint32_t sign = static_cast<uint32_t>(rng() & 1u) << 31;
  const uint32_t man = static_cast<uint32_t>(rng()) & 0x7FFFFFu;
  const uint32_t e = static_cast<uint32_t>(exp_dist(rng) + 127);
  return std::bit_cast<float>(sign | (e << 23) | man);
}

TEST(CudaHostOracle, E2M1RandomAllBinades) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 2'000'000; ++i) {
    // Most mass where E2M1 decides something (2^-4 .. 2^4), plus the whole float range.
    const float x = (i % 4 == 0) ? random_float(rng, -126, 127) : random_float(rng, -4, 4);
    ASSERT_EQ(e2m1_encode(x), oracle_fp4(x))
        << "x = " << x << " bits " << std::hex << std::bit_cast<uint32_t>(x);
  }
}

TEST(CudaHostOracle, E2M1MidpointsAndNeighbours) {
  const float grid[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  for (int i = 0; i + 1 < 8; ++i) {
    const float mid = (grid[i] + grid[i + 1]) / 2;
    for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 100.0f), grid[i]}) {
      EXPECT_EQ(e2m1_encode(x), oracle_fp4(x)) << x;
      EXPECT_EQ(e2m1_encode(-x), oracle_fp4(-x)) << -x;
    }
  }
}

TEST(CudaHostOracle, E4M3RandomAllBinades) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2'000'000; ++i) {
    const float x = (i % 4 == 0) ? random_float(rng, -126, 127) : random_float(rng, -12, 9);
    ASSERT_EQ(e4m3_encode(x), oracle_fp8(x))
        << "x = " << x << " bits " << std::hex << std::bit_cast<uint32_t>(x);
  }
}

TEST(CudaHostOracle, E4M3EveryMidpointAndNeighbours) {
  for (int c = 0; c < 0x7E; ++c) {
    const double lo = e4m3_decode(static_cast<uint8_t>(c));
    const double hi = e4m3_decode(static_cast<uint8_t>(c + 1));
    const float mid = static_cast<float>((lo + hi) / 2);
    for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)}) {
      EXPECT_EQ(e4m3_encode(x), oracle_fp8(x)) << x;
      EXPECT_EQ(e4m3_encode(-x), oracle_fp8(-x)) << -x;
    }
  }
  for (float x : {448.0f, 463.99f, 464.0f, 464.01f, 500.0f, 1e38f}) {
    EXPECT_EQ(e4m3_encode(x), oracle_fp8(x)) << x;
  }
}

// CUDA's own float -> FP16 rounding, as a bit pattern.
uint16_t oracle_half(float x) {
  return std::bit_cast<uint16_t>(__half_raw(__float2half_rn(x)).x);
}

// FP16 (codecs.h f16_bits / f16_value) against CUDA's __float2half_rn / __half2float: random
// floats over every binade from below FP16's subnormals to past its largest value, every
// half-way point between neighbouring FP16 values (ties to even), and every FP16 bit pattern.
TEST(CudaHostOracle, F16RoundingAndValues) {
  std::mt19937_64 rng(17);
  for (int i = 0; i < 1000000; ++i) {
    const float x = random_float(rng, -30, 17);
    ASSERT_EQ(f16_bits(x), oracle_half(x)) << x;
  }
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    __half_raw r;
    r.x = static_cast<unsigned short>(h);
    const float want = __half2float(__half(r));
    const float got = f16_value(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << h;
      continue;
    }
    ASSERT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(want)) << h;
    if ((h & 0x7C00u) == 0x7C00u || (h & 0x7FFFu) == 0x7BFFu) continue;  // inf, NaN, the largest
    // The midpoint to the next value up (exact in float32) and its neighbours.
    const float next = f16_value(static_cast<uint16_t>(h + 1));
    const float mid = want + (next - want) / 2;
    for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)}) {
      ASSERT_EQ(f16_bits(x), oracle_half(x)) << h << " " << x;
    }
  }
}

// The merged operand's halves (merged_operand.h) against CUDA's own float -> half rounding: hi is
// __float2half_rn of the two paths' sum and lo that of the remainder, on every element of real
// decompositions with heavy outliers (where lo is non-zero) and on random FP16-range pairs.
void expect_oracle_split(float sp, float rs) {
  const float a = sp + rs;
  const uint16_t hi = oracle_half(a);
  const float lo = a - __half2float(__half(__half_raw{hi}));
  const MergedHalves h = merge_to_halves(sp, rs);
  ASSERT_EQ(h.hi, hi) << sp << " + " << rs;
  ASSERT_EQ(h.lo, oracle_half(lo)) << sp << " + " << rs;
}

TEST(CudaHostOracle, MergedOperandHalves) {
  int64_t lo_nonzero = 0;
  for (Mode mode : {Mode::kSharqNvfp4_24, Mode::kSharqNvfp4}) {
    const int64_t rows = 64, cols = 512;
    const auto x = synthetic_activation(rows, cols, 21, 8, 500.0f);
    const ActivationQuant q = quantize_activation(mode, x.data(), rows, cols, "x");
    std::vector<float> sp(cols), rs(cols);
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row_scaled(q.sparse_q, r, sp.data());
      dequantize_row_scaled(q.dense_q, r, rs.data());
      for (int64_t c = 0; c < cols; ++c) {
        expect_oracle_split(sp[c], rs[c]);
        lo_nonzero += merge_to_halves(sp[c], rs[c]).lo != 0;
      }
    }
  }
  EXPECT_GT(lo_nonzero, 0);
  // Random pairs: 4-bit significands, the smaller 1-18 binades below the larger (so the sum
  // spans at most 22 bits and lo at most 11, as for SPEC 5 decodes), exponents over FP16's range.
  std::mt19937_64 rng(9);
  for (int i = 0; i < 200000; ++i) {
    const int eb = static_cast<int>(rng() % 20) - 10;
    const int es = std::max(eb - 1 - static_cast<int>(rng() % 18), -20);
    const float big = std::ldexp(static_cast<float>(8 + rng() % 8), eb);
    const float small = std::ldexp(static_cast<float>(8 + rng() % 8), es);
    expect_oracle_split(big, (rng() & 1) ? small : -small);
  }
}

}  // namespace
}  // namespace sharq
