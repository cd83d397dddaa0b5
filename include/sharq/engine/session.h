// A forward session over one prepared Model: its KV cache, batched prefill and one-token decode,
// sampling (greedy, or temperature + top-p with a seeded RNG) and a generation loop. A session
// may run `batch` sequences in lockstep (same length, own caches: the decode benchmark's batch).
// Not thread-safe (one session per thread). Buffers live in the backend's memory.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <vector>

#include "sharq/engine/model.h"

namespace sharq::engine {

class Session {
 public:
  // capacity: the most positions the KV cache holds per sequence (prompt + generated tokens).
  Session(const Model& model, int64_t capacity, int64_t batch = 1);

  const Model& model() const { return *model_; }
  int64_t position() const { return pos_; }  // tokens already in the cache (per sequence)
  int64_t capacity() const { return capacity_; }
  int64_t batch() const { return batch_; }
  KvCache kv_cache() const { return kv_cache_; }  // the backend's format at construction
  // Backend memory the K and V caches of every layer hold (the format's storage).
  int64_t kv_cache_bytes() const;
  void reset() { pos_ = 0; }

  // Runs ids (batch * T, sequence-major: ids[b * T + i]) at positions position()..+T-1 as one
  // batch (every linear quantizes its whole (batch * T, K) activation at once), appends them to
  // the KV caches, and leaves the final-normed hidden states (batch * T, D) in backend memory.
  // Throws sharq::Error if the cache would overflow or ids.size() is not a multiple of batch.
  void forward_hidden(std::span<const int32_t> ids);
  // Logits of `rows` hidden rows from row0 of the last forward_hidden, into host memory
  // (rows, V).
  void logits(int64_t row0, int64_t rows, float* out);

  // forward_hidden, then logits into host memory: each sequence's last token (batch, V), or every
  // token's (batch * T, V) when all = true.
  std::vector<float> forward(std::span<const int32_t> ids, bool all = false);
  // forward(ids) into this session's own host buffer (page-locked on a device backend, reused):
  // each sequence's last token (batch, V), valid until the session's next forward_view. The
  // decode loops' form: no allocation and one DMA a step.
  std::span<const float> forward_view(std::span<const int32_t> ids);

 private:
  void run_layers(std::span<const int32_t> ids, int64_t t);  // the decoder body at pos_
  void last_logits(float* out);  // each sequence's last row of the last forward, (batch, V)

  const Model* model_;
  int64_t capacity_;
  int64_t batch_;
  KvCache kv_cache_;
  int64_t pos_ = 0;
  int64_t rows_ = 0;       // batch * T of the last forward_hidden
  uint64_t step_key_ = 0;  // names the buffers below (Backend::begin_step)
  // Per layer (batch, kv_heads, capacity, head_dim) in kv_cache_'s format
  // (Backend::kv_cache_floats of storage each).
  std::vector<Buffer> k_cache_, v_cache_;
  // Scratch, grown per call: x (R, D) residual stream (R = batch * T), h (R, max(D, I)) normed
  // input, xq the quantized activation (Backend::quantized_activation_floats), q (R, q_dim), k/v
  // (R, kv_dim), a (R, q_dim) attention output, g/u (R, I) gate and up, lg logits.
  Buffer x_, h_, xq_, qkv_, a_, gu_, lg_;
  HostBuffer view_;  // forward_view's logits
};

struct SamplingParams {
  float temperature = 0.0f;  // <= 0: greedy (argmax, lowest id on ties)
  float top_p = 1.0f;        // nucleus: smallest set of most likely tokens with mass >= top_p
  uint64_t seed = 0;
};

// Deterministic for a given seed on every platform (mt19937_64 and our own uniform mapping).
class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  // logits: (V).
  int32_t sample(std::span<const float> logits);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> buf_;
};

int32_t argmax(std::span<const float> logits);

struct GenerateStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prefill_seconds = 0.0;  // the prompt's forward
  int64_t decode_steps = 0;      // one-token forwards after the prefill
  double decode_seconds = 0.0;   // their time, sampling included
  bool stopped = false;          // a stop token ended generation (it is not emitted)
};

// Appends `prompt` to the session as one prefill, then samples up to max_new tokens one decode
// at a time. on_token(id) is called for each emitted token as it is produced; returning false
// stops. Generation also stops at a token in stop_ids or when the cache is full.
GenerateStats generate(Session& s, std::span<const int32_t> prompt, int64_t max_new,
                       const SamplingParams& params, std::span<const int32_t> stop_ids,
                       const std::function<bool(int32_t)>& on_token);

}  // namespace sharq::engine
