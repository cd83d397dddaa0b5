// The CPU Backend (DESIGN "CPU path"): weights quantized once and kept as their exact
// dequantized float32 values, activations fake-quantized per call, products through OpenBLAS.
// Not a fast inference path for FP4 storage: the weights live in memory as float32.
#include "sharq/engine/backend.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "sharq/cpu/linear.h"
#include "sharq/cpu/ops.h"
#include "sharq/decompose.h"
#include "sharq/error.h"
#include "sharq/parallel.h"
#include "sharq/weights.h"

namespace sharq::engine {
namespace {

struct CpuLinear final : LinearWeights {
  std::vector<float> w;     // (N, K) dequantized
  std::vector<float> bias;  // (N) or empty
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : threads_(threads > 0 ? threads : default_threads()) {
    const char* env = std::getenv("SHARQ_BLAS_SPLIT");
    split_ = !(env && env[0] == '0');
    cpu::set_blas_threads(split_ ? 1 : threads_);
  }
  std::string_view name() const override { return "cpu"; }
  int threads() const override { return threads_; }

  std::unique_ptr<LinearWeights> prepare_linear(Mode mode, const float* w, const float* bias,
                                                int64_t n, int64_t k,
                                                std::string_view name) override {
    auto out = std::make_unique<CpuLinear>();
    out->name = std::string(name);
    out->mode = mode;
    out->n = n;
    out->k = k;
    out->has_bias = bias != nullptr;
    const QuantizedWeight qw = quantize_weight(mode, w, n, k, name, threads_);
    out->w.resize(static_cast<size_t>(n * k));
    dequantize_weight(qw, out->w.data(), threads_);
    if (bias) out->bias.assign(bias, bias + n);
    return out;
  }

  std::unique_ptr<LinearWeights> prepare_linear_f32(const float* w, const float* bias, int64_t n,
                                                    int64_t k, std::string_view name) override {
    auto out = std::make_unique<CpuLinear>();
    out->name = std::string(name);
    out->n = n;
    out->k = k;
    out->has_bias = bias != nullptr;
    out->quantized = false;
    out->w.assign(w, w + n * k);
    if (bias) out->bias.assign(bias, bias + n);
    return out;
  }

  void quantize_activation(Mode mode, const float* x, int64_t t, int64_t k, float* xq,
                           std::string_view name) override {
    fake_quantize_activation(mode, x, t, k, xq, name, threads_);
  }

  void matmul(const LinearWeights& w, const float* xq, int64_t t, float* y) override {
    const auto& c = static_cast<const CpuLinear&>(w);
    const float* b = c.bias.empty() ? nullptr : c.bias.data();
    if (split_) {
      cpu::linear_f32_split(xq, c.w.data(), b, y, t, c.n, c.k, threads_);
    } else {
      cpu::linear_f32(xq, c.w.data(), b, y, t, c.n, c.k);
    }
  }

  void linear_f32(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n,
                  int64_t k) override {
    cpu::linear_f32(x, w, bias, y, m, n, k);
  }

  void embedding(const float* table, int64_t vocab, int64_t d, const int32_t* ids, int64_t t,
                 float* out) override {
    cpu::embedding(table, vocab, d, ids, t, out);
  }
  void rms_norm(const float* x, const float* w, int64_t rows, int64_t d, float eps,
                float* out) override {
    cpu::rms_norm(x, w, rows, d, eps, out, threads_);
  }
  void rope(float* x, int64_t t, int64_t pos0, int64_t heads, int64_t head_dim,
            const float* inv_freq) override {
    cpu::rope(x, t, pos0, heads, head_dim, inv_freq, threads_);
  }
  void kv_store(const float* k, const float* v, int64_t t, int64_t pos0, int64_t kv_heads,
                int64_t head_dim, int64_t capacity, float* k_cache, float* v_cache) override {
    cpu::kv_store(k, v, t, pos0, kv_heads, head_dim, capacity, k_cache, v_cache);
  }
  void attention(const float* q, int64_t t, int64_t pos0, int64_t heads, int64_t kv_heads,
                 int64_t head_dim, int64_t capacity, const float* k_cache, const float* v_cache,
                 float* out) override {
    cpu::attention(q, t, pos0, heads, kv_heads, head_dim, capacity, k_cache, v_cache, out,
                   split_ ? threads_ : 1);
  }
  void swiglu(const float* gate, const float* up, int64_t n, float* out) override {
    cpu::swiglu(gate, up, n, out, threads_);
  }
  void add(float* x, const float* y, int64_t n) override { cpu::add(x, y, n); }

 private:
  int threads_;
  bool split_ = true;
};

}  // namespace

std::unique_ptr<LinearWeights> Backend::prepare_linear_f32(const float*, const float*, int64_t,
                                                           int64_t, std::string_view name) {
  throw Error("backend '" + std::string(this->name()) + "' has no float32 linear (for " +
              std::string(name) + ")");
}

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace sharq::engine
