// The decoder forward (one code path for prefill and decode), the KV cache, sampling and the
// generation loop. Not the weight preparation (model.cpp) and not perplexity (perplexity.cpp).
#include "sharq/engine/session.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include "sharq/error.h"

namespace sharq::engine {
namespace {

void grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Session::Session(const Model& model, int64_t capacity) : model_(&model), capacity_(capacity) {
  if (capacity <= 0) throw Error("session: capacity must be positive");
  const auto& c = model.config();
  const size_t n = static_cast<size_t>(c.num_kv_heads * capacity * c.head_dim);
  k_cache_.assign(static_cast<size_t>(c.num_layers), std::vector<float>(n));
  v_cache_.assign(static_cast<size_t>(c.num_layers), std::vector<float>(n));
}

void Session::forward_hidden(std::span<const int32_t> ids) {
  const auto& c = model_->config();
  Backend& be = model_->backend();
  const int64_t t = static_cast<int64_t>(ids.size());
  if (t == 0) throw Error("forward: no tokens");
  if (pos_ + t > capacity_) {
    throw Error("forward: " + std::to_string(pos_) + " cached + " + std::to_string(t) +
                " new tokens exceed the context capacity " + std::to_string(capacity_));
  }
  const int64_t d = c.hidden_size, in = c.intermediate_size, hd = c.head_dim;
  const int64_t qd = model_->q_dim(), kvd = model_->kv_dim();
  const int64_t heads = c.num_heads, kvh = c.num_kv_heads;
  x_.resize(static_cast<size_t>(t * d));
  grow(h_, t * d);
  grow(xq_, t * std::max({d, in, qd}));
  grow(q_, t * qd);
  grow(k_, t * kvd);
  grow(v_, t * kvd);
  grow(a_, t * qd);
  grow(g_, t * in);
  grow(u_, t * in);

  // The shared input of several linears, quantized once into xq_ (or used as is for f32).
  auto quantize = [&](const float* x, int64_t rows, int64_t k, const std::string& name) {
    if (!model_->quantized()) return x;
    be.quantize_activation(model_->mode(), x, rows, k, xq_.data(), name);
    return static_cast<const float*>(xq_.data());
  };
  be.embedding(model_->embed(), c.vocab_size, d, ids.data(), t, x_.data());
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& L = model_->layers()[static_cast<size_t>(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    // Attention block. q, k and v read one input, so it is quantized once.
    be.rms_norm(x_.data(), L.input_norm, t, d, c.rms_norm_eps, h_.data());
    const float* act = quantize(h_.data(), t, d, p + "self_attn.qkv.input");
    be.matmul(*L.q, act, t, q_.data());
    be.matmul(*L.k, act, t, k_.data());
    be.matmul(*L.v, act, t, v_.data());
    if (L.q_norm) {
      be.rms_norm(q_.data(), L.q_norm, t * heads, hd, c.rms_norm_eps, q_.data());
      be.rms_norm(k_.data(), L.k_norm, t * kvh, hd, c.rms_norm_eps, k_.data());
    }
    be.rope(q_.data(), t, pos_, heads, hd, model_->inv_freq().data());
    be.rope(k_.data(), t, pos_, kvh, hd, model_->inv_freq().data());
    float* kc = k_cache_[static_cast<size_t>(l)].data();
    float* vc = v_cache_[static_cast<size_t>(l)].data();
    be.kv_store(k_.data(), v_.data(), t, pos_, kvh, hd, capacity_, kc, vc);
    be.attention(q_.data(), t, pos_, heads, kvh, hd, capacity_, kc, vc, a_.data());
    be.linear(*L.o, a_.data(), t, h_.data(), xq_.data());
    be.add(x_.data(), h_.data(), t * d);
    // MLP block. gate and up share one quantized input.
    be.rms_norm(x_.data(), L.post_norm, t, d, c.rms_norm_eps, h_.data());
    act = quantize(h_.data(), t, d, p + "mlp.gate_up.input");
    be.matmul(*L.gate, act, t, g_.data());
    be.matmul(*L.up, act, t, u_.data());
    be.swiglu(g_.data(), u_.data(), t * in, g_.data());
    be.linear(*L.down, g_.data(), t, h_.data(), xq_.data());
    be.add(x_.data(), h_.data(), t * d);
  }
  be.rms_norm(x_.data(), model_->final_norm(), t, d, c.rms_norm_eps, x_.data());
  pos_ += t;
}

std::vector<float> Session::forward(std::span<const int32_t> ids, bool all) {
  forward_hidden(ids);
  const int64_t t = static_cast<int64_t>(ids.size());
  const int64_t d = model_->config().hidden_size;
  const int64_t rows = all ? t : 1;
  std::vector<float> out(static_cast<size_t>(rows * model_->config().vocab_size));
  model_->logits(x_.data() + (t - rows) * d, rows, out.data());
  return out;
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
  std::vector<float> logits = s.forward(prompt);
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
    logits = s.forward(next);
    ++st.decode_steps;
  }
  st.decode_seconds = seconds_since(t0);
  return st;
}

}  // namespace sharq::engine
