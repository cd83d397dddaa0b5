// EvalBackend: recording and experiment variants on top of any Backend.
#include "sharq/eval/eval_backend.h"

#include <algorithm>

#include "sharq/cpu/linear.h"
#include "sharq/weights.h"

namespace sharq::eval {
namespace {

// Weights dequantized under a variant, kept as float32 like the CPU backend's own.
struct VariantLinear : engine::LinearWeights {
  std::vector<float> w;     // (N, K)
  std::vector<float> bias;  // (N) or empty
};

}  // namespace

EvalBackend::EvalBackend(engine::Backend& inner, const Variant& variant, Captures* capture,
                         int64_t capture_rows)
    : inner_(inner), variant_(variant), capture_(capture), capture_rows_(capture_rows) {}

std::unique_ptr<engine::LinearWeights> EvalBackend::prepare_linear(Mode mode, const float* w,
                                                                   const float* bias, int64_t n,
                                                                   int64_t k,
                                                                   std::string_view name) {
  if (!variant_.fp8_decoded) return inner_.prepare_linear(mode, w, bias, n, k, name);
  auto out = std::make_unique<VariantLinear>();
  out->name = std::string(name);
  out->mode = mode;
  out->n = n;
  out->k = k;
  out->has_bias = bias != nullptr;
  out->w.resize(static_cast<size_t>(n * k));
  dequantize_weight(quantize_weight(mode, w, n, k, name, threads()), out->w.data(), threads(),
                    variant_);
  if (bias) out->bias.assign(bias, bias + n);
  return out;
}

void EvalBackend::quantize_activation(Mode mode, const float* x, int64_t t, int64_t k, float* xq,
                                      std::string_view name) {
  if (capture_) {
    CapturedInput& c = (*capture_)[std::string(name)];
    c.rows = std::min(t, capture_rows_);
    c.k = k;
    c.x.assign(x, x + c.rows * k);
  }
  if (variant_.any()) {
    fake_quantize_activation(mode, x, t, k, xq, name, threads(), variant_);
  } else {
    inner_.quantize_activation(mode, x, t, k, xq, name);
  }
}

void EvalBackend::matmul(const engine::LinearWeights& w, const float* xq, int64_t t, float* y) {
  if (const auto* v = dynamic_cast<const VariantLinear*>(&w)) {
    cpu::linear_f32(xq, v->w.data(), v->has_bias ? v->bias.data() : nullptr, y, t, v->n, v->k);
    return;
  }
  inner_.matmul(w, xq, t, y);
}

}  // namespace sharq::eval
