// The CPU Backend (DESIGN "CPU path"): weights quantized once and kept as their exact
// dequantized float32 values, activations fake-quantized per call, products through OpenBLAS.
// Not a fast inference path for FP4 storage: the weights live in memory as float32.
#include "sharq/engine/backend.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "sharq/codecs.h"
#include "sharq/cpu/linear.h"
#include "sharq/cpu/ops.h"
#include "sharq/decompose.h"
#include "sharq/env_switch.h"
#include "sharq/error.h"
#include "sharq/parallel.h"
#include "sharq/weights.h"

namespace sharq::engine {
namespace {

struct CpuLinear final : LinearWeights {
  std::vector<float> w;         // (N, K) dequantized
  std::vector<float> bias;      // (N) or empty
  const float* view = nullptr;  // the LM head: the caller's float32 (N, K), read in place
  const float* data() const { return view ? view : w.data(); }
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : threads_(threads > 0 ? threads : default_threads()) {
    split_ = switched_on("SHARQ_BLAS_SPLIT");
    cpu::set_blas_threads(split_ ? 1 : threads_);
    // SHARQ_CPU_KV_ROUND=bf16|f16, an accuracy study and not a mode: the cached K and V values are
    // rounded to that 16-bit format as they are stored, as a 16-bit KV cache would hold them
    // (docs/RESULTS.md, issue 6, session 23), whatever set_kv_cache chose. Unset: the format
    // set_kv_cache chose (float32 storage either way; KvCache::kF16 rounds as f16 does here).
    const char* kv = std::getenv("SHARQ_CPU_KV_ROUND");
    const std::string kv_round = kv ? kv : "";
    if (kv_round == "bf16") {
      kv_round_ = KvRound::kBf16;
    } else if (kv_round == "f16") {
      kv_round_ = KvRound::kF16;
    } else if (!kv_round.empty()) {
      throw Error("SHARQ_CPU_KV_ROUND: '" + kv_round + "' is not bf16 or f16");
    }
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
    out->bytes = static_cast<int64_t>((out->w.size() + out->bias.size()) * sizeof(float));
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
    out->bytes = static_cast<int64_t>((out->w.size() + out->bias.size()) * sizeof(float));
    return out;
  }

  std::unique_ptr<LinearWeights> prepare_lm_head(const float* w, int64_t n, int64_t k) override {
    auto out = std::make_unique<CpuLinear>();
    out->name = "lm_head.weight";
    out->n = n;
    out->k = k;
    out->quantized = false;
    out->view = w;
    out->bytes = n * k * static_cast<int64_t>(sizeof(float));
    return out;
  }

  void quantize_activation(Mode mode, const float* x, int64_t t, int64_t k, float* xq,
                           std::string_view name) override {
    fake_quantize_activation(mode, x, t, k, xq, name, threads_);
  }

  void matmul(const LinearWeights& w, const float* xq, int64_t t, float* y) override {
    const auto& c = static_cast<const CpuLinear&>(w);
    const float* b = c.bias.empty() ? nullptr : c.bias.data();
    if (c.view) {  // the LM head: OpenBLAS threads it (one large product, no per-call splits)
      cpu::linear_f32(xq, c.view, b, y, t, c.n, c.k);
    } else if (split_) {
      cpu::linear_f32_split(xq, c.data(), b, y, t, c.n, c.k, threads_);
    } else {
      cpu::linear_f32(xq, c.data(), b, y, t, c.n, c.k);
    }
  }

  void embedding(const float* table, int64_t vocab, int64_t d, const int32_t* ids, int64_t t,
                 float* out) override {
    cpu::embedding(table, vocab, d, ids, t, out);
  }
  void rms_norm(const float* x, const float* w, int64_t rows, int64_t d, float eps,
                float* out) override {
    cpu::rms_norm(x, w, rows, d, eps, out, threads_);
  }
  // Sequences of a batch are independent: one CPU call per sequence.
  void rope(float* x, int64_t batch, int64_t t, int64_t pos0, int64_t heads, int64_t head_dim,
            const float* inv_freq) override {
    for (int64_t b = 0; b < batch; ++b) {
      cpu::rope(x + b * t * heads * head_dim, t, pos0, heads, head_dim, inv_freq, threads_);
    }
  }
  void kv_store(const float* k, const float* v, int64_t batch, int64_t t, int64_t pos0,
                int64_t kv_heads, int64_t head_dim, int64_t capacity, float* k_cache,
                float* v_cache) override {
    const int64_t row = t * kv_heads * head_dim, cache = kv_heads * capacity * head_dim;
    const KvRound round = kv_round_ != KvRound::kNone   ? kv_round_
                          : kv_cache() == KvCache::kF16 ? KvRound::kF16
                                                        : KvRound::kNone;
    for (int64_t b = 0; b < batch; ++b) {
      cpu::kv_store(k + b * row, v + b * row, t, pos0, kv_heads, head_dim, capacity,
                    k_cache + b * cache, v_cache + b * cache);
      if (round == KvRound::kNone) continue;
      for (float* c : {k_cache + b * cache, v_cache + b * cache}) {
        for (int64_t g = 0; g < kv_heads; ++g) {
          float* r = c + (g * capacity + pos0) * head_dim;
          for (int64_t e = 0; e < t * head_dim; ++e) {
            r[e] = round == KvRound::kBf16 ? bf16_round(r[e]) : f16_value(f16_bits(r[e]));
          }
        }
      }
    }
  }
  void attention(const float* q, int64_t batch, int64_t t, int64_t pos0, int64_t heads,
                 int64_t kv_heads, int64_t head_dim, int64_t capacity, const float* k_cache,
                 const float* v_cache, float* out) override {
    const int64_t row = t * heads * head_dim, cache = kv_heads * capacity * head_dim;
    for (int64_t b = 0; b < batch; ++b) {
      cpu::attention(q + b * row, t, pos0, heads, kv_heads, head_dim, capacity, k_cache + b * cache,
                     v_cache + b * cache, out + b * row, split_ ? threads_ : 1);
    }
  }
  void swiglu(const float* gate, const float* up, int64_t n, float* out) override {
    cpu::swiglu(gate, up, n, out, threads_);
  }
  void add(float* x, const float* y, int64_t n) override { cpu::add(x, y, n); }

 private:
  enum class KvRound { kNone, kBf16, kF16 };
  KvRound kv_round_ = KvRound::kNone;
  int threads_;
  bool split_ = true;
};

}  // namespace

float* Backend::alloc(int64_t n) {
  if (n < 0) throw Error("backend: negative allocation");
  return new float[static_cast<size_t>(std::max<int64_t>(n, 1))];
}
void Backend::release(float* p) {
  delete[] p;
}
float* Backend::alloc_host(int64_t n) {
  return Backend::alloc(n);
}
void Backend::release_host(float* p) {
  Backend::release(p);
}
void Backend::to_backend(const float* host, float* dst, int64_t n) {
  std::copy(host, host + n, dst);
}
void Backend::to_host(const float* src, float* host, int64_t n) {
  std::copy(src, src + n, host);
}
const float* Backend::resident(const float* host, int64_t) {
  return host;
}

std::unique_ptr<LinearWeights> Backend::prepare_linear_f32(const float*, const float*, int64_t,
                                                           int64_t, std::string_view name) {
  throw Error("backend '" + std::string(this->name()) + "' has no float32 linear (for " +
              std::string(name) + ")");
}

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace sharq::engine
