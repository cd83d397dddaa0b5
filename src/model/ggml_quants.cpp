// Scalar dequantization of the ggml block types GGUF files carry (the spec of each layout is the
// comment on its struct in ggml_quants.h). Not a fast path: it runs once, at load time.
#include "sharq/model/ggml_quants.h"

#include <bit>
#include <cmath>
#include <cstring>

#include "sharq/error.h"
#include "sharq/model/gguf.h"

namespace sharq::model {

float fp16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  float out;
  if (exp == 0) {
    // Subnormal (or zero): man * 2^-24, exact in float.
    out = std::ldexp(static_cast<float>(man), -24);
    return sign ? -out : out;
  }
  uint32_t bits;
  if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  }
  return std::bit_cast<float>(bits);
}

uint16_t float_to_fp16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const float a = std::fabs(f);
  if (std::isnan(f)) return static_cast<uint16_t>(sign | 0x7e00u);
  if (a >= 65520.0f) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (a < 6.103515625e-05f) {
    // Subnormal range: quantum 2^-24; nearbyint rounds half to even in the default mode.
    const float q = std::nearbyint(a * 16777216.0f);
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(q));
  }
  const uint32_t ax = std::bit_cast<uint32_t>(a);
  const uint32_t exp = (ax >> 23) - 112u;
  uint32_t man = ax & 0x7fffffu;
  uint32_t h = (exp << 10) | (man >> 13);
  const uint32_t rest = man & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // carries into exp correctly
  return static_cast<uint16_t>(sign | h);
}

float bf16_to_float(uint16_t h) {
  return std::bit_cast<float>(static_cast<uint32_t>(h) << 16);
}

namespace {

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

void dequant_f32(const uint8_t* src, float* dst, size_t n) {
  std::memcpy(dst, src, n * 4);
}

void dequant_f16(const uint8_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = fp16_to_float(load_u16(src + 2 * i));
}

void dequant_bf16(const uint8_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_float(load_u16(src + 2 * i));
}

void dequant_q8_0(const uint8_t* src, float* dst, size_t nb) {
  for (size_t b = 0; b < nb; ++b) {
    BlockQ8_0 blk;
    std::memcpy(&blk, src + b * sizeof blk, sizeof blk);
    const float d = fp16_to_float(blk.d);
    for (int i = 0; i < 32; ++i) dst[b * 32 + i] = d * static_cast<float>(blk.qs[i]);
  }
}

void dequant_q4_0(const uint8_t* src, float* dst, size_t nb) {
  for (size_t b = 0; b < nb; ++b) {
    BlockQ4_0 blk;
    std::memcpy(&blk, src + b * sizeof blk, sizeof blk);
    const float d = fp16_to_float(blk.d);
    float* y = dst + b * 32;
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>((blk.qs[j] & 0x0f) - 8);
      y[j + 16] = d * static_cast<float>((blk.qs[j] >> 4) - 8);
    }
  }
}

void dequant_q4_1(const uint8_t* src, float* dst, size_t nb) {
  for (size_t b = 0; b < nb; ++b) {
    BlockQ4_1 blk;
    std::memcpy(&blk, src + b * sizeof blk, sizeof blk);
    const float d = fp16_to_float(blk.d);
    const float m = fp16_to_float(blk.m);
    float* y = dst + b * 32;
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(blk.qs[j] & 0x0f) + m;
      y[j + 16] = d * static_cast<float>(blk.qs[j] >> 4) + m;
    }
  }
}

// Six-bit scale and min of sub-block j (0..7) from the 12 packed bytes of Q4_K/Q5_K: sub-blocks
// 0-3 use the low 6 bits of bytes j and j+4; 4-7 take 4 bits from byte j+4 and their top two
// bits from the spare high bits of bytes j-4 (scale) and j (min).
void unpack_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

void dequant_q4_k(const uint8_t* src, float* dst, size_t nb) {
  for (size_t b = 0; b < nb; ++b) {
    BlockQ4_K blk;
    std::memcpy(&blk, src + b * sizeof blk, sizeof blk);
    const float d = fp16_to_float(blk.d);
    const float dmin = fp16_to_float(blk.dmin);
    float* y = dst + b * 256;
    const uint8_t* q = blk.qs;
    for (int c = 0; c < 4; ++c) {
      uint8_t sc0, m0, sc1, m1;
      unpack_scale_min_k4(2 * c, blk.scales, &sc0, &m0);
      unpack_scale_min_k4(2 * c + 1, blk.scales, &sc1, &m1);
      const float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
      for (int l = 0; l < 32; ++l) y[l] = d0 * static_cast<float>(q[l] & 0x0f) - mm0;
      for (int l = 0; l < 32; ++l) y[32 + l] = d1 * static_cast<float>(q[l] >> 4) - mm1;
      y += 64;
      q += 32;
    }
  }
}

void dequant_q5_k(const uint8_t* src, float* dst, size_t nb) {
  for (size_t b = 0; b < nb; ++b) {
    BlockQ5_K blk;
    std::memcpy(&blk, src + b * sizeof blk, sizeof blk);
    const float d = fp16_to_float(blk.d);
    const float dmin = fp16_to_float(blk.dmin);
    float* y = dst + b * 256;
    const uint8_t* q = blk.qs;
    for (int c = 0; c < 4; ++c) {
      uint8_t sc0, m0, sc1, m1;
      unpack_scale_min_k4(2 * c, blk.scales, &sc0, &m0);
      unpack_scale_min_k4(2 * c + 1, blk.scales, &sc1, &m1);
      const float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
      const uint8_t bit0 = static_cast<uint8_t>(1u << (2 * c));
      const uint8_t bit1 = static_cast<uint8_t>(1u << (2 * c + 1));
      for (int l = 0; l < 32; ++l) {
        const int hi = (blk.qh[l] & bit0) ? 16 : 0;
        y[l] = d0 * static_cast<float>((q[l] & 0x0f) + hi) - mm0;
      }
      for (int l = 0; l < 32; ++l) {
        const int hi = (blk.qh[l] & bit1) ? 16 : 0;
        y[32 + l] = d1 * static_cast<float>((q[l] >> 4) + hi) - mm1;
      }
      y += 64;
      q += 32;
    }
  }
}

void dequant_q6_k(const uint8_t* src, float* dst, size_t nb) {
  for (size_t b = 0; b < nb; ++b) {
    BlockQ6_K blk;
    std::memcpy(&blk, src + b * sizeof blk, sizeof blk);
    const float d = fp16_to_float(blk.d);
    float* y = dst + b * 256;
    const uint8_t* ql = blk.ql;
    const uint8_t* qh = blk.qh;
    const int8_t* sc = blk.scales;
    for (int half = 0; half < 2; ++half) {
      for (int l = 0; l < 32; ++l) {
        const int s = l / 16;
        const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * static_cast<float>(sc[s] * q1);
        y[l + 32] = d * static_cast<float>(sc[s + 2] * q2);
        y[l + 64] = d * static_cast<float>(sc[s + 4] * q3);
        y[l + 96] = d * static_cast<float>(sc[s + 6] * q4);
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

// Element types (f32/f16/bf16) use a block of one element.
const GgmlTypeTraits kTraits[] = {
    {0, "F32", 1, 4, dequant_f32},
    {1, "F16", 1, 2, dequant_f16},
    {30, "BF16", 1, 2, dequant_bf16},
    {8, "Q8_0", 32, sizeof(BlockQ8_0), dequant_q8_0},
    {2, "Q4_0", 32, sizeof(BlockQ4_0), dequant_q4_0},
    {3, "Q4_1", 32, sizeof(BlockQ4_1), dequant_q4_1},
    {12, "Q4_K", 256, sizeof(BlockQ4_K), dequant_q4_k},
    {13, "Q5_K", 256, sizeof(BlockQ5_K), dequant_q5_k},
    {14, "Q6_K", 256, sizeof(BlockQ6_K), dequant_q6_k},
};

}  // namespace

const GgmlTypeTraits* ggml_traits(uint32_t type) {
  for (const auto& t : kTraits) {
    if (t.type == type) return &t;
  }
  return nullptr;
}

std::string ggml_type_name(uint32_t type) {
  if (const auto* t = ggml_traits(type)) return t->name;
  switch (type) {
    case 6:
      return "Q5_0";
    case 7:
      return "Q5_1";
    case 9:
      return "Q8_1";
    case 10:
      return "Q2_K";
    case 11:
      return "Q3_K";
    case 15:
      return "Q8_K";
    default:
      return "type " + std::to_string(type);
  }
}

void ggml_dequantize(uint32_t type, std::span<const uint8_t> src, float* dst, uint64_t n_elements) {
  const GgmlTypeTraits* t = ggml_traits(type);
  if (!t) throw Error("unsupported ggml tensor type " + ggml_type_name(type));
  if (n_elements % t->block_size != 0) {
    throw Error(std::string("ggml type ") + t->name + ": " + std::to_string(n_elements) +
                " elements is not a multiple of the block size " + std::to_string(t->block_size));
  }
  const uint64_t n_blocks = n_elements / t->block_size;
  if (n_blocks > src.size() / t->block_bytes) {
    throw Error(std::string("ggml type ") + t->name + ": " + std::to_string(src.size()) +
                " bytes hold fewer than the " + std::to_string(n_blocks) + " blocks needed");
  }
  t->dequantize(src.data(), dst, static_cast<size_t>(n_blocks));
}

void quantize_q8_0(const float* src, uint8_t* dst, size_t n) {
  if (n % 32 != 0) throw Error("quantize_q8_0: n=" + std::to_string(n) + " not a multiple of 32");
  for (size_t b = 0; b < n / 32; ++b) {
    const float* x = src + b * 32;
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ8_0 blk;
    blk.d = float_to_fp16(d);
    for (int i = 0; i < 32; ++i) blk.qs[i] = static_cast<int8_t>(std::lround(x[i] * id));
    std::memcpy(dst + b * sizeof blk, &blk, sizeof blk);
  }
}

}  // namespace sharq::model
