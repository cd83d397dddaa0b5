// The decoder forward (one code path for prefill and decode), the KV cache, sampling and the
// generation loop. Not the weight preparation (model.cpp) and not perplexity (perplexity.cpp).
#include "sharq/engine/session.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <string>

#include "sharq/error.h"

namespace sharq::engine {
namespace {

// Replay keys are unique across every session of the process: a freed session's buffers may be
// reused by another at the same addresses.
uint64_t next_step_key() {
  static std::atomic<uint64_t> next{1};
  return next++;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Session::Session(const Model& model, int64_t capacity, int64_t batch)
    : model_(&model), capacity_(capacity), batch_(batch), kv_cache_(model.backend().kv_cache()) {
  if (capacity <= 0) throw Error("session: capacity must be positive");
  if (batch <= 0) throw Error("session: batch must be positive");
  const auto& c = model.config();
  Backend& be = model.backend();
  const int64_t n = be.kv_cache_floats(batch * c.num_kv_heads * capacity * c.head_dim);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    k_cache_.emplace_back(be, n);
    v_cache_.emplace_back(be, n);
  }
}

int64_t Session::kv_cache_bytes() const {
  int64_t floats = 0;
  for (const Buffer& b : k_cache_) floats += b.size();
  for (const Buffer& b : v_cache_) floats += b.size();
  return floats * static_cast<int64_t>(sizeof(float));
}

void Session::forward_hidden(std::span<const int32_t> ids) {
  const auto& c = model_->config();
  Backend& be = model_->backend();
  const int64_t rows = static_cast<int64_t>(ids.size());
  if (rows == 0) throw Error("forward: no tokens");
  if (be.kv_cache() != kv_cache_) {
    throw Error("forward: the backend's KV cache format is now " +
                std::string(kv_cache_name(be.kv_cache())) + "; this session's cache is " +
                std::string(kv_cache_name(kv_cache_)) + " (create a new session)");
  }
  if (rows % batch_ != 0) {
    throw Error("forward: " + std::to_string(rows) + " ids are not a multiple of the batch " +
                std::to_string(batch_));
  }
  const int64_t t = rows / batch_;
  if (pos_ + t > capacity_) {
    throw Error("forward: " + std::to_string(pos_) + " cached + " + std::to_string(t) +
                " new tokens exceed the context capacity " + std::to_string(capacity_));
  }
  const int64_t d = c.hidden_size, in = c.intermediate_size;
  const int64_t qd = model_->q_dim(), kvd = model_->kv_dim();
  // Every buffer is grown (| not ||): a step's buffers move together under one replay key.
  const bool moved = x_.grow(be, rows * d) | h_.grow(be, rows * std::max(d, in)) |
                     xq_.grow(be, std::max({be.quantized_activation_floats(rows, d),
                                            be.quantized_activation_floats(rows, in),
                                            be.quantized_activation_floats(rows, qd)})) |
                     qkv_.grow(be, rows * (qd + 2 * kvd)) | a_.grow(be, rows * qd) |
                     gu_.grow(be, rows * 2 * in);
  if (moved || step_key_ == 0) step_key_ = next_step_key();
  // A decode step may be replayed from a recording (Backend::begin_step).
  const Backend::Step step =
      t == 1 ? be.begin_step(step_key_, model_->mode(), model_->quantized(), ids.data(), rows, pos_)
             : Backend::Step::kRun;
  bool done = step == Backend::Step::kReplayed;
  if (step == Backend::Step::kRecording) {
    try {
      run_layers(ids, t);
      done = be.end_step();
    } catch (...) {
      be.abort_step();
    }
  }
  // A step that could not be recorded runs as plain ops (an error in them surfaces here).
  if (!done) run_layers(ids, t);
  pos_ += t;
  rows_ = rows;
}

void Session::run_layers(std::span<const int32_t> ids, int64_t t) {
  const auto& c = model_->config();
  Backend& be = model_->backend();
  const int64_t rows = static_cast<int64_t>(ids.size());
  const int64_t d = c.hidden_size, in = c.intermediate_size, hd = c.head_dim;
  const int64_t heads = c.num_heads, kvh = c.num_kv_heads, nb = batch_;
  const int64_t qd = model_->q_dim(), kvd = model_->kv_dim();
  // q, k, v (and gate, up) side by side: for one row, one product's output is all three.
  float *x = x_.data(), *h = h_.data(), *xq = xq_.data(), *a = a_.data();
  float *q = qkv_.data(), *k = q + rows * qd, *v = k + rows * kvd;
  float *g = gu_.data(), *u = g + rows * in;

  // RMSNorm, then the input shared by several linears quantized once into xq (or used as is for
  // f32).
  auto norm_quantize = [&](const float* w, const std::string& name) -> const float* {
    if (!model_->quantized()) {
      be.rms_norm(x, w, rows, d, c.rms_norm_eps, h);
      return h;
    }
    be.rms_norm_quantize(model_->mode(), x, w, rows, d, c.rms_norm_eps, h, xq, name);
    return xq;
  };
  be.embedding(model_->embed(), c.vocab_size, d, ids.data(), rows, x);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& L = model_->layers()[static_cast<size_t>(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    float* kc = k_cache_[static_cast<size_t>(l)].data();
    float* vc = v_cache_[static_cast<size_t>(l)].data();
    // Before the norm and the q/k/v product: the attention's K/V can be on its way meanwhile.
    be.prefetch_kv(kc, vc, nb, t, pos_, kvh, hd, capacity_);
    // Attention block. q, k and v read one input, so it is quantized once.
    const float* act = norm_quantize(L.input_norm, p + "self_attn.qkv.input");
    be.matmul_group(std::array<const LinearWeights*, 3>{L.q.get(), L.k.get(), L.v.get()}, act, rows,
                    std::array<float*, 3>{q, k, v});
    if (L.q_norm) {
      be.rms_norm(q, L.q_norm, rows * heads, hd, c.rms_norm_eps, q);
      be.rms_norm(k, L.k_norm, rows * kvh, hd, c.rms_norm_eps, k);
    }
    // RoPE, the KV store, attention and the o projection's activation rule, fused where possible.
    be.rope_attention(L.o->mode, q, k, v, nb, t, pos_, heads, kvh, hd, model_->inv_freq(),
                      capacity_, kc, vc, a, L.o->quantized ? xq : nullptr, L.o->name);
    be.matmul_add(*L.o, L.o->quantized ? xq : a, rows, x, h);
    // MLP block. gate and up share one quantized input.
    act = norm_quantize(L.post_norm, p + "mlp.gate_up.input");
    be.matmul_group(std::array<const LinearWeights*, 2>{L.gate.get(), L.up.get()}, act, rows,
                    std::array<float*, 2>{g, u});
    if (L.down->quantized) {  // SwiGLU and down_proj's activation rule, fused where possible
      be.swiglu_quantize(L.down->mode, g, u, rows, in, g, xq, L.down->name);
      be.matmul_add(*L.down, xq, rows, x, h);
    } else {
      be.swiglu(g, u, rows * in, g);
      be.matmul_add(*L.down, g, rows, x, h);
    }
  }
  be.rms_norm(x, model_->final_norm(), rows, d, c.rms_norm_eps, x);
}

void Session::logits(int64_t row0, int64_t rows, float* out) {
  if (row0 < 0 || rows <= 0 || row0 + rows > rows_) {
    throw Error("session: logits rows [" + std::to_string(row0) + ", " +
                std::to_string(row0 + rows) + ") outside the last forward's " +
                std::to_string(rows_) + " rows");
  }
  Backend& be = model_->backend();
  const int64_t v = model_->config().vocab_size, d = model_->config().hidden_size;
  lg_.grow(be, rows * v);
  model_->logits(x_.data() + row0 * d, rows, lg_.data());
  be.to_host(lg_.data(), out, rows * v);
}

std::vector<float> Session::forward(std::span<const int32_t> ids, bool all) {
  forward_hidden(ids);
  const int64_t v = model_->config().vocab_size;
  if (all) {
    std::vector<float> out(static_cast<size_t>(rows_ * v));
    logits(0, rows_, out.data());
    return out;
  }
  std::vector<float> out(static_cast<size_t>(batch_ * v));
  last_logits(out.data());
  return out;
}

std::span<const float> Session::forward_view(std::span<const int32_t> ids) {
  forward_hidden(ids);
  const int64_t n = batch_ * model_->config().vocab_size;
  view_.grow(model_->backend(), n);
  last_logits(view_.data());
  return {view_.data(), static_cast<size_t>(n)};
}

void Session::last_logits(float* out) {
  const int64_t v = model_->config().vocab_size;
  const int64_t t = rows_ / batch_;
  if (t == 1) {  // decode: the last rows are every row, one product
    logits(0, rows_, out);
  } else {
    for (int64_t b = 0; b < batch_; ++b) logits(b * t + t - 1, 1, out + b * v);
  }
}

int32_t argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

Sampler::Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) {
  if (!(p.top_p > 0.0f) || p.top_p > 1.0f) throw Error("sampling: top_p must be in (0, 1]");
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (p_.temperature <= 0.0f) return argmax(logits);
  const float mx = *std::max_element(logits.begin(), logits.end());
  buf_.resize(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float w = static_cast<float>(std::exp((logits[i] - mx) / p_.temperature));
    buf_[i] = {w, static_cast<int32_t>(i)};
    sum += w;
  }
  // Most likely first; ties by id so the order (and so the draw) is deterministic.
  std::sort(buf_.begin(), buf_.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  size_t keep = 0;
  double mass = 0.0;
  while (keep < buf_.size() && (keep == 0 || mass < p_.top_p * sum)) mass += buf_[keep++].first;
  // 53 random bits -> [0, 1): std::uniform_real_distribution differs between libraries.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * mass;
  double acc = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    acc += buf_[i].first;
    if (u < acc) return buf_[i].second;
  }
  return buf_[keep - 1].second;
}

GenerateStats generate(Session& s, std::span<const int32_t> prompt, int64_t max_new,
                       const SamplingParams& params, std::span<const int32_t> stop_ids,
                       const std::function<bool(int32_t)>& on_token) {
  GenerateStats st;
  st.prompt_tokens = static_cast<int64_t>(prompt.size());
  if (prompt.empty()) throw Error("generate: empty prompt");
  Sampler sampler(params);
  auto t0 = std::chrono::steady_clock::now();
  std::span<const float> logits = s.forward_view(prompt);
  st.prefill_seconds = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < max_new; ++i) {
    const int32_t id = sampler.sample(logits);
    if (std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end()) {
      st.stopped = true;
      break;
    }
    ++st.generated_tokens;
    if (on_token && !on_token(id)) break;
    if (i + 1 == max_new || s.position() >= s.capacity()) break;
    const int32_t next[1] = {id};
    logits = s.forward_view(next);
    ++st.decode_steps;
  }
  st.decode_seconds = seconds_since(t0);
  return st;
}

}  // namespace sharq::engine
