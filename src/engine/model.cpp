// Builds the decoder of one mode from a LoadedModel: architecture hooks, config and shape
// checks with the tensor name in every error, and the one-time weight quantization.
// Not the forward pass (session.cpp).
#include "sharq/engine/model.h"

#include <array>
#include <string>

#include "sharq/cpu/ops.h"
#include "sharq/error.h"

namespace sharq::engine {
namespace {

// One line per architecture: the decoder is shared, only these hooks differ.
constexpr ArchSpec kArchs[] = {
    {"llama", false, false},
    {"qwen2", true, false},
    {"qwen3", false, true},
};

std::string shape_of(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + ")";
}

class TensorTable {
 public:
  explicit TensorTable(const model::LoadedModel& m) : m_(m) {}
  bool has(const std::string& name) const { return m_.tensors.count(name) != 0; }
  // Returns the data of `name`, checking it has exactly `shape`.
  const float* get(const std::string& name, const std::vector<int64_t>& shape) const {
    auto it = m_.tensors.find(name);
    if (it == m_.tensors.end()) {
      throw Error(m_.source + ": tensor '" + name + "' is missing (arch " + m_.config.arch + ")");
    }
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    if (it->second.shape != shape || static_cast<int64_t>(it->second.data.size()) != n) {
      throw Error(m_.source + ": tensor '" + name + "' has shape " + shape_of(it->second.shape) +
                  " with " + std::to_string(it->second.data.size()) + " values, expected " +
                  shape_of(shape));
    }
    return it->second.data.data();
  }

 private:
  const model::LoadedModel& m_;
};

void check_config(const model::ModelConfig& c, const std::string& source) {
  auto positive = [&](int64_t v, const char* what) {
    if (v <= 0) throw Error(source + ": config " + what + " = " + std::to_string(v) + " <= 0");
  };
  positive(c.vocab_size, "vocab_size");
  positive(c.hidden_size, "hidden_size");
  positive(c.intermediate_size, "intermediate_size");
  positive(c.num_layers, "num_layers");
  positive(c.num_heads, "num_heads");
  positive(c.num_kv_heads, "num_kv_heads");
  positive(c.head_dim, "head_dim");
  if (c.num_heads % c.num_kv_heads != 0) {
    throw Error(source + ": num_heads " + std::to_string(c.num_heads) +
                " is not a multiple of num_kv_heads " + std::to_string(c.num_kv_heads));
  }
  if (!(c.rms_norm_eps > 0.0f) || !(c.rope_theta > 0.0f)) {
    throw Error(source + ": rms_norm_eps and rope_theta must be positive");
  }
}

}  // namespace

const ArchSpec& arch_spec(const std::string& arch) {
  for (const ArchSpec& a : kArchs) {
    if (arch == a.name) return a;
  }
  throw Error("unsupported architecture '" + arch + "' (supported: llama, qwen2, qwen3)");
}

Model::Model(const model::LoadedModel& src, Mode mode, Backend& backend,
             const std::function<void(int64_t, int64_t)>& progress)
    : Model(src, mode, true, backend, progress) {}

Model Model::float32(const model::LoadedModel& src, Backend& backend) {
  return Model(src, Mode::kBf16, false, backend, {});
}

std::string Model::mode_label() const {
  return quantized_ ? std::string(mode_name(mode_)) : std::string("f32");
}

Model::Model(const model::LoadedModel& src, Mode mode, bool quantized, Backend& backend,
             const std::function<void(int64_t, int64_t)>& progress)
    : cfg_(src.config),
      quantized_(quantized),
      arch_(&arch_spec(src.config.arch)),
      mode_(mode),
      backend_(&backend) {
  check_config(cfg_, src.source);
  const TensorTable t(src);
  const int64_t d = cfg_.hidden_size, v = cfg_.vocab_size, in = cfg_.intermediate_size;
  const int64_t hd = cfg_.head_dim, qd = q_dim(), kvd = kv_dim();
  inv_freq_host_ = cpu::rope_inv_freq(hd, cfg_.rope_theta, cfg_.rope_scaling);
  inv_freq_ = backend.resident(inv_freq_host_.data(), hd / 2);
  const float* embed = t.get("model.embed_tokens.weight", {v, d});
  embed_ = backend.resident(embed, v * d);
  final_norm_ = backend.resident(t.get("model.norm.weight", {d}), d);
  // Untied configs whose file lacks lm_head (and tied ones that still ship it) exist: the
  // embedding is the head whenever tied or absent.
  lm_head_ = backend.prepare_lm_head(!cfg_.tie_word_embeddings && t.has("lm_head.weight")
                                         ? t.get("lm_head.weight", {v, d})
                                         : embed,
                                     v, d);
  const bool qkv_bias = arch_->qkv_bias || cfg_.attention_bias;
  const bool qk_norm = arch_->qk_norm || cfg_.qk_norm;
  layers_.resize(static_cast<size_t>(cfg_.num_layers));
  for (int64_t l = 0; l < cfg_.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights& L = layers_[static_cast<size_t>(l)];
    L.input_norm = backend.resident(t.get(p + "input_layernorm.weight", {d}), d);
    L.post_norm = backend.resident(t.get(p + "post_attention_layernorm.weight", {d}), d);
    if (qk_norm) {
      L.q_norm = backend.resident(t.get(p + "self_attn.q_norm.weight", {hd}), hd);
      L.k_norm = backend.resident(t.get(p + "self_attn.k_norm.weight", {hd}), hd);
    }
    auto lin = [&](const std::string& name, int64_t n, int64_t k, bool bias) {
      const float* w = t.get(p + name + ".weight", {n, k});
      // A bias the architecture does not require is still used when the file has one (HF Llama
      // with attention_bias also biases o_proj).
      const bool use_bias = bias || t.has(p + name + ".bias");
      const float* b = use_bias ? t.get(p + name + ".bias", {n}) : nullptr;
      const std::string wname = p + name + ".weight";
      return quantized ? backend.prepare_linear(mode, w, b, n, k, wname)
                       : backend.prepare_linear_f32(w, b, n, k, wname);
    };
    L.q = lin("self_attn.q_proj", qd, d, qkv_bias);
    L.k = lin("self_attn.k_proj", kvd, d, qkv_bias);
    L.v = lin("self_attn.v_proj", kvd, d, qkv_bias);
    L.o = lin("self_attn.o_proj", d, qd, false);
    L.gate = lin("mlp.gate_proj", in, d, false);
    L.up = lin("mlp.up_proj", in, d, false);
    L.down = lin("mlp.down_proj", d, in, false);
    backend.group_linears(std::array<LinearWeights*, 3>{L.q.get(), L.k.get(), L.v.get()});
    backend.group_linears(std::array<LinearWeights*, 2>{L.gate.get(), L.up.get()});
    if (progress) progress(l + 1, cfg_.num_layers);
  }
}

void Model::logits(const float* hidden, int64_t rows, float* out) const {
  backend_->matmul(*lm_head_, hidden, rows, out);
}

int64_t Model::linear_weight_bytes() const {
  int64_t n = 0;
  for (const LayerWeights& L : layers_) {
    for (const auto* w : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) n += (*w)->bytes;
  }
  return n;
}

int64_t parameter_count(const model::LoadedModel& m) {
  int64_t n = 0;
  for (const auto& [name, tensor] : m.tensors) n += static_cast<int64_t>(tensor.data.size());
  return n;
}

}  // namespace sharq::engine
