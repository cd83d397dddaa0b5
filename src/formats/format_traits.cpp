// The one traits table of block formats, plus whole-matrix quantize/dequantize built on it.
// Adding a format means: its row quantizer/dequantizer file and one row in kFormats.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "sharq/codecs.h"
#include "sharq/error.h"
#include "sharq/formats.h"
#include "sharq/parallel.h"
#include "sharq/tensor_checks.h"

namespace sharq {
namespace {

void nvfp4_g16_quantize_row(const float* xs, int64_t k, uint8_t* codes, uint8_t* scales,
                            float* deq) {
  nvfp4_quantize_row(xs, k, 16, codes, scales, deq);
}
void nvfp4_g32_quantize_row(const float* xs, int64_t k, uint8_t* codes, uint8_t* scales,
                            float* deq) {
  nvfp4_quantize_row(xs, k, 32, codes, scales, deq);
}

template <int G>
void nvfp4_dequantize_row(const uint8_t* codes, const uint8_t* scales, int64_t k, float* out) {
  for (int64_t i = 0; i < k; ++i)
    out[i] = e2m1_decode(get_nibble(codes, i)) * ue4m3_decode(scales[i / G]);
}
void mxfp4_dequantize_row(const uint8_t* codes, const uint8_t* scales, int64_t k, float* out) {
  for (int64_t i = 0; i < k; ++i)
    out[i] = e2m1_decode(get_nibble(codes, i)) * e8m0_decode(scales[i / 32]);
}
void hif4_dequantize_row(const uint8_t* codes, const uint8_t* scales, int64_t k, float* out) {
  for (int64_t o = 0; o < k; o += 64) {
    Hif4BlockScale w;
    std::memcpy(&w, scales + (o / 64) * 4, 4);
    const float B = e6m2_decode(w.e6m2);
    for (int e = 0; e < 64; ++e) {
      const int up = ((w.e1_8 >> (e / 8)) & 1) + ((w.e1_16 >> (e / 4)) & 1);
      out[o + e] = (s1p2_decode(get_nibble(codes, o + e)) * B) * static_cast<float>(1 << up);
    }
  }
}
void fp8_dequantize_row(const uint8_t* codes, const uint8_t* /*scales*/, int64_t k, float* out) {
  for (int64_t i = 0; i < k; ++i) out[i] = e4m3_decode(codes[i]);
}

// name, block, code bits, scale bytes, tensor scaled, s_t divisor, bits/value, row fns
const FormatTraits kFormats[] = {
    {Format::kNvfp4G16, "nvfp4-g16", 16, 4, 1, true, 2688.0f, 4.5, nvfp4_g16_quantize_row,
     nvfp4_dequantize_row<16>},
    {Format::kNvfp4G32, "nvfp4-g32", 32, 4, 1, true, 2688.0f, 4.25, nvfp4_g32_quantize_row,
     nvfp4_dequantize_row<32>},
    {Format::kMxfp4, "mxfp4", 32, 4, 1, false, 1.0f, 4.25, mxfp4_quantize_row,
     mxfp4_dequantize_row},
    {Format::kHif4, "hif4", 64, 4, 4, false, 1.0f, 4.5, hif4_quantize_row, hif4_dequantize_row},
    {Format::kFp8, "fp8-e4m3", 0, 8, 0, true, 448.0f, 8.0, fp8_quantize_row, fp8_dequantize_row},
};

int64_t scale_units_per_row(const FormatTraits& t, int64_t cols) {
  return t.block == 0 ? 0 : cols / t.block;
}

}  // namespace

const FormatTraits& format_traits(Format f) {
  for (const auto& t : kFormats) {
    if (t.format == f) return t;
  }
  throw Error("unknown format id " + std::to_string(static_cast<int>(f)));
}

Format format_from_name(std::string_view name) {
  std::string known;
  for (const auto& t : kFormats) {
    if (name == t.name) return t.format;
    known += std::string(known.empty() ? "" : ", ") + t.name;
  }
  throw Error("unknown format '" + std::string(name) + "' (known: " + known + ")");
}

uint8_t PackedTensor::code(int64_t r, int64_t c) const {
  const int64_t i = r * cols + c;
  return format_traits(format).code_bits == 8 ? codes[static_cast<size_t>(i)]
                                              : get_nibble(codes.data(), i);
}

float tensor_scale_for(float absmax_value, float div, std::string_view tensor_name) {
  if (absmax_value == 0.0f) return 1.0f;
  const float s = absmax_value / div;
  if (!std::isfinite(rcp(s))) {
    char amax[32];
    std::snprintf(amax, sizeof amax, "%g", static_cast<double>(absmax_value));
    throw Error("tensor '" + std::string(tensor_name) + "': max |x| = " + amax +
                " is too small for a float32 tensor scale (1/s_t overflows); rescale the input");
  }
  return s;
}

PackedTensor quantize(Format f, const float* x, int64_t rows, int64_t cols,
                      std::string_view tensor_name, int threads) {
  check_k_multiple_of_64(rows, cols, tensor_name);
  check_finite(x, rows, cols, tensor_name);
  const FormatTraits& t = format_traits(f);
  PackedTensor out;
  out.format = f;
  out.rows = rows;
  out.cols = cols;
  out.tensor_scale = t.tensor_scaled ? tensor_scale_for(absmax(x, rows * cols, threads),
                                                        t.tensor_scale_div, tensor_name)
                                     : 1.0f;
  const int64_t code_bytes_row = cols * t.code_bits / 8;
  const int64_t scale_bytes_row = scale_units_per_row(t, cols) * t.scale_bytes;
  out.codes.assign(static_cast<size_t>(rows * code_bytes_row), 0);
  out.scales.assign(static_cast<size_t>(rows * scale_bytes_row), 0);
  const float inv = rcp(out.tensor_scale);
  parallel_for(rows, threads, [&](int64_t r0, int64_t r1) {
    std::vector<float> xs(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = x + r * cols;
      for (int64_t c = 0; c < cols; ++c) xs[c] = t.tensor_scaled ? row[c] * inv : row[c];
      t.quantize_row(xs.data(), cols, out.codes.data() + r * code_bytes_row,
                     out.scales.data() + r * scale_bytes_row, nullptr);
    }
  });
  return out;
}

void dequantize_row_scaled(const PackedTensor& p, int64_t r, float* out) {
  const FormatTraits& t = format_traits(p.format);
  const int64_t code_bytes_row = p.cols * t.code_bits / 8;
  const int64_t scale_bytes_row = scale_units_per_row(t, p.cols) * t.scale_bytes;
  t.dequantize_row(p.codes.data() + r * code_bytes_row, p.scales.data() + r * scale_bytes_row,
                   p.cols, out);
}

void dequantize(const PackedTensor& p, float* out, int threads) {
  parallel_for(p.rows, threads, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* o = out + r * p.cols;
      dequantize_row_scaled(p, r, o);
      for (int64_t c = 0; c < p.cols; ++c) o[c] = o[c] * p.tensor_scale;
    }
  });
}

}  // namespace sharq
