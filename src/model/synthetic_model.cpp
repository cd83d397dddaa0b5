// Synthetic models for benchmarks: real configs (values from the models' published config.json),
// seeded random weights. Not a loader.
#include "sharq/model/synthetic_model.h"

#include <cmath>

#include "sharq/error.h"
#include "sharq/parallel.h"

namespace sharq::model {
namespace {

struct Preset {
  const char* name;
  ModelConfig config;
};

ModelConfig llama31_8b() {
  ModelConfig c;
  c.arch = "llama";
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_layers = 32;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.max_position_embeddings = 131072;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 500000.0f;
  c.rope_scaling = {"llama3", 8.0f, 1.0f, 4.0f, 8192};
  c.tie_word_embeddings = false;
  return c;
}

// Small enough for CPU tests of the benchmark path; K multiples of 64 like the real shapes.
ModelConfig llama_tiny() {
  ModelConfig c;
  c.arch = "llama";
  c.vocab_size = 512;
  c.hidden_size = 128;
  c.intermediate_size = 320;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 32;
  c.max_position_embeddings = 4096;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  return c;
}

const std::vector<Preset>& presets() {
  static const std::vector<Preset> p = {{"llama-3.1-8b", llama31_8b()},
                                        {"llama-tiny", llama_tiny()}};
  return p;
}

// SplitMix64: a seekable stream, so every chunk of a tensor is generated independently.
uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Approximately N(0, std^2): the sum of four uniforms, rescaled (cheap; tails do not matter).
void fill_gaussian(std::vector<float>& v, uint64_t seed, float stddev, int threads) {
  const auto n = static_cast<int64_t>(v.size());
  parallel_for(n, threads, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const uint64_t r = mix(seed ^ mix(static_cast<uint64_t>(i)));
      float s = 0.0f;
      for (int j = 0; j < 4; ++j) s += static_cast<float>((r >> (16 * j)) & 0xFFFF) / 65535.0f;
      // Sum of 4 U(0,1): mean 2, variance 4/12.
      v[static_cast<size_t>(i)] = (s - 2.0f) * stddev * 1.7320508f;
    }
  });
}

}  // namespace

std::vector<std::string> synthetic_presets() {
  std::vector<std::string> out;
  for (const Preset& p : presets()) out.emplace_back(p.name);
  return out;
}

ModelConfig synthetic_config(std::string_view preset) {
  std::string known;
  for (const Preset& p : presets()) {
    if (preset == p.name) return p.config;
    known += (known.empty() ? "" : ", ") + std::string(p.name);
  }
  throw Error("unknown synthetic model '" + std::string(preset) + "' (known: " + known + ")");
}

LoadedModel synthetic_model(std::string_view preset, uint64_t seed, int threads, int64_t layers) {
  LoadedModel m;
  m.config = synthetic_config(preset);
  if (layers > 0) m.config.num_layers = layers;
  m.source = "synthetic:" + std::string(preset);
  const ModelConfig& c = m.config;
  uint64_t tensor_seed = seed;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float stddev) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    FloatTensor t;
    t.shape = std::move(shape);
    t.data.resize(static_cast<size_t>(n));
    if (stddev > 0.0f) {
      fill_gaussian(t.data, mix(++tensor_seed), stddev, threads);
    } else {
      std::fill(t.data.begin(), t.data.end(), 1.0f);  // norm weights
    }
    m.tensors.emplace(name, std::move(t));
  };
  const int64_t d = c.hidden_size, in = c.intermediate_size, hd = c.head_dim;
  const int64_t qd = c.num_heads * hd, kvd = c.num_kv_heads * hd;
  add("model.embed_tokens.weight", {c.vocab_size, d}, 0.02f);
  add("model.norm.weight", {d}, 0.0f);
  if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, d}, 0.02f);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {d}, 0.0f);
    add(p + "post_attention_layernorm.weight", {d}, 0.0f);
    add(p + "self_attn.q_proj.weight", {qd, d}, 0.02f);
    add(p + "self_attn.k_proj.weight", {kvd, d}, 0.02f);
    add(p + "self_attn.v_proj.weight", {kvd, d}, 0.02f);
    add(p + "self_attn.o_proj.weight", {d, qd}, 0.02f);
    add(p + "mlp.gate_proj.weight", {in, d}, 0.02f);
    add(p + "mlp.up_proj.weight", {in, d}, 0.02f);
    add(p + "mlp.down_proj.weight", {d, in}, 0.02f);
  }
  return m;
}

}  // namespace sharq::model
