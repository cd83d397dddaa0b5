// The Backend interface: the handful of ops the decoder needs (DESIGN "Backends share one
// interface"). Buffers are host float32 pointers for now; a device backend will need its own
// buffer type. Not the decoder itself (engine/model.h) and not a graph or scheduler.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "sharq/modes.h"

namespace sharq::engine {

// A linear layer's weights as one backend keeps them, quantized once by the mode's weight rule.
// Each backend derives its own storage (the CPU keeps the exact dequantized float32 values).
struct LinearWeights {
  virtual ~LinearWeights() = default;
  std::string name;  // tensor name, for errors
  Mode mode = Mode::kBf16;
  int64_t n = 0;  // out_features
  int64_t k = 0;  // in_features
  bool has_bias = false;
  bool quantized = true;  // false: float32 reference weights, activations used as they are
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual int threads() const = 0;

  // W: (N, K) row-major float32; bias: (N) or null. Quantizes W once under `mode`.
  virtual std::unique_ptr<LinearWeights> prepare_linear(Mode mode, const float* w,
                                                        const float* bias, int64_t n, int64_t k,
                                                        std::string_view name) = 0;
  // The same, unquantized (float32 reference runs, peer checks against transformers). The
  // default throws: a backend opts in.
  virtual std::unique_ptr<LinearWeights> prepare_linear_f32(const float* w, const float* bias,
                                                            int64_t n, int64_t k,
                                                            std::string_view name);
  // x, xq: (T, K). The mode's activation rule over the whole (T, K) matrix (one tensor scale per
  // call, SPEC 5): every linear that shares one input shares one quantized copy. The decoder
  // names the inputs "model.layers.L.self_attn.qkv.input", "model.layers.L.mlp.gate_up.input",
  // and the o_proj / down_proj weight names for theirs (eval's capture relies on these names).
  virtual void quantize_activation(Mode mode, const float* x, int64_t t, int64_t k, float* xq,
                                   std::string_view name) = 0;
  // xq: (T, K) already quantized; y: (T, N) = xq . W^T (+ bias), float32 accumulation.
  virtual void matmul(const LinearWeights& w, const float* xq, int64_t t, float* y) = 0;
  // Unquantized product for the LM head. x: (M, K), w: (N, K), bias: (N) or null, y: (M, N).
  virtual void linear_f32(const float* x, const float* w, const float* bias, float* y, int64_t m,
                          int64_t n, int64_t k) = 0;

  // table: (V, D); ids: (T), each in [0, V) (checked); out: (T, D).
  virtual void embedding(const float* table, int64_t vocab, int64_t d, const int32_t* ids,
                         int64_t t, float* out) = 0;
  // x, out: (rows, D); w: (D). out = x / sqrt(mean(x^2) + eps) * w. out may alias x.
  virtual void rms_norm(const float* x, const float* w, int64_t rows, int64_t d, float eps,
                        float* out) = 0;
  // x: (T, heads * head_dim), row i at position pos0 + i; rotates in place with HF's rotate_half
  // pairing (j, j + head_dim/2). inv_freq: (head_dim / 2).
  virtual void rope(float* x, int64_t t, int64_t pos0, int64_t heads, int64_t head_dim,
                    const float* inv_freq) = 0;
  // k, v: (T, kv_heads * head_dim) for positions pos0..pos0+T-1, copied into the caches
  // k_cache, v_cache: (kv_heads, capacity, head_dim).
  virtual void kv_store(const float* k, const float* v, int64_t t, int64_t pos0, int64_t kv_heads,
                        int64_t head_dim, int64_t capacity, float* k_cache, float* v_cache) = 0;
  // Causal GQA attention. q: (T, heads * head_dim), row i at position pos0 + i; the caches hold
  // positions 0..pos0+T-1; out: (T, heads * head_dim). Head h reads kv head h / (heads/kv_heads).
  // Scores are scaled by 1/sqrt(head_dim).
  virtual void attention(const float* q, int64_t t, int64_t pos0, int64_t heads, int64_t kv_heads,
                         int64_t head_dim, int64_t capacity, const float* k_cache,
                         const float* v_cache, float* out) = 0;
  // gate, up, out: (n). out = silu(gate) * up. out may alias gate or up.
  virtual void swiglu(const float* gate, const float* up, int64_t n, float* out) = 0;
  // x += y, (n).
  virtual void add(float* x, const float* y, int64_t n) = 0;

  // Y (T, N) = Q_act(X (T, K)) . W^T (+ bias): quantize then matmul. scratch: (T, K).
  void linear(const LinearWeights& w, const float* x, int64_t t, float* y, float* scratch) {
    if (!w.quantized) return matmul(w, x, t, y);
    quantize_activation(w.mode, x, t, w.k, scratch, w.name);
    matmul(w, scratch, t, y);
  }
};

// The float32 CPU reference backend (src/cpu/backend.cpp); threads <= 0 means default_threads().
// It sets OpenBLAS to one thread process-wide and splits products over its own threads (no BLAS
// worker left spinning between calls); SHARQ_BLAS_SPLIT=0 keeps OpenBLAS threading instead.
std::unique_ptr<Backend> make_cpu_backend(int threads = 0);

}  // namespace sharq::engine
