// CPU float32 decoder ops (RMSNorm, RoPE, attention, SwiGLU, ...) that the CPU backend calls;
// each is tested against a double-precision loop in tests/engine. Not the quantized linear
// (cpu/linear.h + decompose.h) and not the Backend interface (engine/backend.h).
#pragma once

#include <cstdint>
#include <vector>

#include "sharq/model/loaded_model.h"

namespace sharq::cpu {

// table: (V, D); ids: (T); out: (T, D). Throws sharq::Error for an id outside [0, V).
void embedding(const float* table, int64_t vocab, int64_t d, const int32_t* ids, int64_t t,
               float* out);

// x, out: (rows, D); w: (D). out = x * rsqrt(mean(x^2) + eps) * w (mean in double). May alias.
void rms_norm(const float* x, const float* w, int64_t rows, int64_t d, float eps, float* out,
              int threads);

// Returns inv_freq: (head_dim / 2), inv_freq[j] = theta^(-2j / head_dim) as HF computes it in
// float32, with the Llama-3 "llama3" rope_scaling adjustment when scaling.type == "llama3".
// Throws sharq::Error for an odd head_dim or an unsupported scaling type.
std::vector<float> rope_inv_freq(int64_t head_dim, float theta, const model::RopeScaling& scaling);

// x: (T, heads * head_dim), row i at position pos0 + i. HF rotate_half: for j < head_dim/2,
// (a, b) = (x[j], x[j + head_dim/2]) becomes (a cos - b sin, b cos + a sin), angle = pos * f[j].
void rope(float* x, int64_t t, int64_t pos0, int64_t heads, int64_t head_dim, const float* inv_freq,
          int threads);

// k, v: (T, kv_heads * head_dim) -> k_cache, v_cache: (kv_heads, capacity, head_dim) at rows
// pos0..pos0+T-1.
void kv_store(const float* k, const float* v, int64_t t, int64_t pos0, int64_t kv_heads,
              int64_t head_dim, int64_t capacity, float* k_cache, float* v_cache);

// Causal GQA attention over the cache (see engine::Backend::attention). Heads run in parallel;
// per head, scores and the weighted sum are single-threaded OpenBLAS GEMMs over blocks of
// queries, each block only against the keys it may see; float32 softmax with the row max
// subtracted. Expects OpenBLAS at one thread (set_blas_threads) when threads > 1.
void attention(const float* q, int64_t t, int64_t pos0, int64_t heads, int64_t kv_heads,
               int64_t head_dim, int64_t capacity, const float* k_cache, const float* v_cache,
               float* out, int threads);

// out = silu(gate) * up = gate / (1 + exp(-gate)) * up, (n). May alias.
void swiglu(const float* gate, const float* up, int64_t n, float* out, int threads);

// x += y, (n).
void add(float* x, const float* y, int64_t n);

// Y (M, N) = X (M, K) . W (N, K)^T [+ bias (N)], split over `threads` blocks of output columns,
// each one single-threaded OpenBLAS call (needs set_blas_threads(1)); no BLAS worker is left
// spinning between calls, which on 2 shared cores costs more than it saves.
void linear_f32_split(const float* x, const float* w, const float* bias, float* y, int64_t m,
                      int64_t n, int64_t k, int threads);

// Sets OpenBLAS's worker count (process-wide).
void set_blas_threads(int threads);

}  // namespace sharq::cpu
