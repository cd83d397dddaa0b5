// In-memory tiny LoadedModels with seeded random weights for the engine tests and benchmark, so
// they do not depend on a loader or a model file. Not realistic weights: only shapes are.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>

#include "sharq/model/loaded_model.h"

namespace sharq::test {

// hidden, q_dim and intermediate must be multiples of 64 (SPEC 1) for the quantized modes.
inline model::ModelConfig tiny_config(const std::string& arch) {
  model::ModelConfig c;
  c.arch = arch;
  c.vocab_size = 97;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = arch == "qwen3" ? 32 : 16;  // qwen3: explicit head_dim != hidden / heads
  c.max_position_embeddings = 256;
  c.rms_norm_eps = 1e-6f;
  c.rope_theta = arch == "llama" ? 500000.0f : 10000.0f;
  if (arch == "llama") {
    c.rope_scaling = {"llama3", 8.0f, 1.0f, 4.0f, 64};
    c.tie_word_embeddings = true;
  }
  c.attention_bias = arch == "qwen2";
  c.qk_norm = arch == "qwen3";
  return c;
}

// Weights ~ N(0, scale^2) with 1/sqrt(fan_in) scaling; norms near 1.
inline model::LoadedModel tiny_model(const model::ModelConfig& c, uint64_t seed = 7) {
  model::LoadedModel m;
  m.config = c;
  m.source = "tiny-" + c.arch;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale, float mean) {
    model::FloatTensor t;
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    t.shape = std::move(shape);
    t.data.resize(static_cast<size_t>(n));
    for (auto& v : t.data) v = mean + scale * nd(rng);
    m.tensors[name] = std::move(t);
  };
  const int64_t d = c.hidden_size, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  const int64_t in = c.intermediate_size;
  add("model.embed_tokens.weight", {c.vocab_size, d}, 1.0f, 0.0f);
  add("model.norm.weight", {d}, 0.1f, 1.0f);
  if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, d}, 0.5f, 0.0f);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {d}, 0.1f, 1.0f);
    add(p + "post_attention_layernorm.weight", {d}, 0.1f, 1.0f);
    const float sd = 1.0f / std::sqrt(static_cast<float>(d));
    add(p + "self_attn.q_proj.weight", {qd, d}, 2.0f * sd, 0.0f);
    add(p + "self_attn.k_proj.weight", {kvd, d}, 2.0f * sd, 0.0f);
    add(p + "self_attn.v_proj.weight", {kvd, d}, sd, 0.0f);
    add(p + "self_attn.o_proj.weight", {d, qd}, 1.0f / std::sqrt(static_cast<float>(qd)), 0.0f);
    add(p + "mlp.gate_proj.weight", {in, d}, sd, 0.0f);
    add(p + "mlp.up_proj.weight", {in, d}, sd, 0.0f);
    add(p + "mlp.down_proj.weight", {d, in}, 1.0f / std::sqrt(static_cast<float>(in)), 0.0f);
    if (c.attention_bias) {
      add(p + "self_attn.q_proj.bias", {qd}, 0.1f, 0.0f);
      add(p + "self_attn.k_proj.bias", {kvd}, 0.1f, 0.0f);
      add(p + "self_attn.v_proj.bias", {kvd}, 0.1f, 0.0f);
    }
    if (c.qk_norm) {
      add(p + "self_attn.q_norm.weight", {c.head_dim}, 0.1f, 1.0f);
      add(p + "self_attn.k_norm.weight", {c.head_dim}, 0.1f, 1.0f);
    }
  }
  return m;
}

}  // namespace sharq::test
