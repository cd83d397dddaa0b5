// A Backend decorator for the eval tool: forwards every op to an inner backend, and optionally
// (1) records the input of every quantized linear (first rows only) for per-layer statistics,
// (2) applies an experiment Variant to activations and weights. Not a compute backend itself.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sharq/decompose.h"
#include "sharq/engine/backend.h"

namespace sharq::eval {

// name -> (rows, K) row-major copy of the layer input, rows = min(T, max_rows).
struct CapturedInput {
  int64_t rows = 0, k = 0;
  std::vector<float> x;
};
using Captures = std::map<std::string, CapturedInput>;

class EvalBackend : public engine::Backend {
 public:
  // capture may be null (no recording). inner must outlive this.
  EvalBackend(engine::Backend& inner, const Variant& variant, Captures* capture,
              int64_t capture_rows);

  std::string_view name() const override { return inner_.name(); }
  int threads() const override { return inner_.threads(); }
  std::unique_ptr<engine::LinearWeights> prepare_linear(Mode mode, const float* w,
                                                        const float* bias, int64_t n, int64_t k,
                                                        std::string_view name) override;
  void quantize_activation(Mode mode, const float* x, int64_t t, int64_t k, float* xq,
                           std::string_view name) override;
  void matmul(const engine::LinearWeights& w, const float* xq, int64_t t, float* y) override;
  std::unique_ptr<engine::LinearWeights> prepare_lm_head(const float* w, int64_t n,
                                                         int64_t k) override {
    return inner_.prepare_lm_head(w, n, k);
  }
  float* alloc(int64_t n) override { return inner_.alloc(n); }
  void release(float* p) override { inner_.release(p); }
  void to_backend(const float* host, float* dst, int64_t n) override {
    inner_.to_backend(host, dst, n);
  }
  void to_host(const float* src, float* host, int64_t n) override { inner_.to_host(src, host, n); }
  const float* resident(const float* host, int64_t n) override { return inner_.resident(host, n); }
  void synchronize() override { inner_.synchronize(); }
  void set_kv_cache(KvCache format) override { inner_.set_kv_cache(format); }
  KvCache kv_cache() const override { return inner_.kv_cache(); }
  int64_t kv_cache_floats(int64_t elements) const override {
    return inner_.kv_cache_floats(elements);
  }
  void embedding(const float* table, int64_t vocab, int64_t d, const int32_t* ids, int64_t t,
                 float* out) override {
    inner_.embedding(table, vocab, d, ids, t, out);
  }
  void rms_norm(const float* x, const float* w, int64_t rows, int64_t d, float eps,
                float* out) override {
    inner_.rms_norm(x, w, rows, d, eps, out);
  }
  void rope(float* x, int64_t batch, int64_t t, int64_t pos0, int64_t heads, int64_t head_dim,
            const float* inv_freq) override {
    inner_.rope(x, batch, t, pos0, heads, head_dim, inv_freq);
  }
  void kv_store(const float* k, const float* v, int64_t batch, int64_t t, int64_t pos0,
                int64_t kv_heads, int64_t head_dim, int64_t capacity, float* k_cache,
                float* v_cache) override {
    inner_.kv_store(k, v, batch, t, pos0, kv_heads, head_dim, capacity, k_cache, v_cache);
  }
  void attention(const float* q, int64_t batch, int64_t t, int64_t pos0, int64_t heads,
                 int64_t kv_heads, int64_t head_dim, int64_t capacity, const float* k_cache,
                 const float* v_cache, float* out) override {
    inner_.attention(q, batch, t, pos0, heads, kv_heads, head_dim, capacity, k_cache, v_cache, out);
  }
  void swiglu(const float* gate, const float* up, int64_t n, float* out) override {
    inner_.swiglu(gate, up, n, out);
  }
  void add(float* x, const float* y, int64_t n) override { inner_.add(x, y, n); }

  // Stops recording (the first window is enough for per-layer statistics).
  void stop_capture() { capture_ = nullptr; }

 private:
  engine::Backend& inner_;
  Variant variant_;
  Captures* capture_;
  int64_t capture_rows_;
};

}  // namespace sharq::eval
