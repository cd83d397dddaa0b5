// SPEC 6 weight rule per mode, the g16 view, and storage accounting.
#include "sharq/weights.h"

#include "sharq/codecs.h"
#include "sharq/error.h"
#include "sharq/parallel.h"
#include "sharq/tensor_checks.h"

namespace sharq {

QuantizedWeight quantize_weight(Mode mode, const float* w, int64_t rows, int64_t cols,
                                std::string_view tensor_name, int threads) {
  const ModeTraits& m = mode_traits(mode);
  QuantizedWeight q;
  q.mode = mode;
  q.rows = rows;
  q.cols = cols;
  if (m.weight_bf16) {
    check_k_multiple_of_64(rows, cols, tensor_name);
    check_finite(w, rows, cols, tensor_name);
    q.bf16_values.resize(static_cast<size_t>(rows * cols));
    parallel_for(rows, threads, [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0 * cols; i < r1 * cols; ++i) q.bf16_values[i] = bf16_round(w[i]);
    });
    return q;
  }
  q.packed = quantize(m.weight_format, w, rows, cols, tensor_name, threads);
  return q;
}

void dequantize_weight(const QuantizedWeight& w, float* out, int threads, const Variant& variant) {
  if (mode_traits(w.mode).weight_bf16) {
    std::copy(w.bf16_values.begin(), w.bf16_values.end(), out);
    return;
  }
  if (!variant.fp8_decoded) {
    dequantize(w.packed, out, threads);
    return;
  }
  const FormatTraits& t = format_traits(w.packed.format);
  const int64_t k = w.cols;
  const int64_t code_row = k * t.code_bits / 8;
  const int64_t scale_row = t.block ? k / t.block * t.scale_bytes : 0;
  parallel_for(w.rows, threads, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* o = out + r * k;
      t.dequantize_row(w.packed.codes.data() + r * code_row, w.packed.scales.data() + r * scale_row,
                       k, o);
      round_decoded_to_fp8(o, k);
      for (int64_t c = 0; c < k; ++c) o[c] = o[c] * w.packed.tensor_scale;
    }
  });
}

int64_t weight_storage_bytes(const QuantizedWeight& w) {
  if (mode_traits(w.mode).weight_bf16) return w.rows * w.cols * 2;
  return static_cast<int64_t>(w.packed.codes.size() + w.packed.scales.size() + sizeof(float));
}

Nvfp4G16View::Nvfp4G16View(const PackedTensor& p) : p_(p) {
  if (p.format != Format::kNvfp4G32) {
    throw Error("g16 view needs an NVFP4 g32 payload, got format '" +
                std::string(format_traits(p.format).name) + "'");
  }
}

float Nvfp4G16View::value(int64_t r, int64_t c) const {
  return e2m1_decode(code(r, c)) * ue4m3_decode(scale_code(r, c / 16));
}

}  // namespace sharq
