// GGUF -> LoadedModel: llama.cpp tensor names and {arch}.* metadata to canonical HF names and
// ModelConfig, q/k rope un-permutation (llama), Llama-3 rope factors, tokenizer.ggml.* metadata.
// Not the container parser (gguf.cpp).
#include <cmath>
#include <cstring>
#include <regex>

#include "sharq/error.h"
#include "sharq/model/gguf.h"
#include "sharq/model/load.h"

namespace sharq::model {

namespace {

// llama.cpp per-layer suffix -> HF per-layer suffix.
const std::pair<const char*, const char*> kLayerNames[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"attn_q.bias", "self_attn.q_proj.bias"},
    {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.bias", "self_attn.v_proj.bias"},
    {"attn_q_norm.weight", "self_attn.q_norm.weight"},
    {"attn_k_norm.weight", "self_attn.k_norm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
};

// Canonical name, "" for rope_freqs (turned into config), throws for unknown names.
std::string canonical_name(const std::string& src, const std::string& n, int64_t n_layers) {
  if (n == "token_embd.weight") return "model.embed_tokens.weight";
  if (n == "output_norm.weight") return "model.norm.weight";
  if (n == "output.weight") return "lm_head.weight";
  if (n == "rope_freqs.weight") return "";
  if (n.rfind("blk.", 0) == 0) {
    const size_t dot = n.find('.', 4);
    if (dot != std::string::npos && dot > 4 && dot - 4 <= 5) {
      const std::string num = n.substr(4, dot - 4);
      bool digits = true;
      for (char ch : num) digits = digits && ch >= '0' && ch <= '9';
      if (digits) {
        const int64_t layer = std::stoll(num);
        if (layer >= n_layers) {
          throw Error(src + ": GGUF tensor '" + n + "': layer " + num + " >= block_count " +
                      std::to_string(n_layers));
        }
        const std::string rest = n.substr(dot + 1);
        for (const auto& [g, h] : kLayerNames) {
          if (rest == g) return "model.layers." + num + "." + h;
        }
      }
    }
  }
  throw Error(src + ": GGUF tensor '" + n + "' is not a known llama/qwen2/qwen3 tensor");
}

int64_t meta_int(const GgufFile& f, const std::string& key, int64_t dflt, bool required) {
  if (!f.find(key)) {
    if (required) throw Error(f.source + ": GGUF: missing metadata key '" + key + "'");
    return dflt;
  }
  return f.get_int(key);
}

float meta_float(const GgufFile& f, const std::string& key, float dflt) {
  return f.find(key) ? static_cast<float>(f.get_float(key)) : dflt;
}

// Recovers llama3 rope_scaling parameters from rope_freqs (GGUF stores only the factors).
// factor is the largest value; low/high_freq_factor follow from the points in the smooth band
// (low_freq_factor = 1, as in every Llama 3.x, when fewer than two points fall in the band).
void rope_from_factors(const GgufFile& f, const std::vector<float>& fac, ModelConfig& c) {
  float factor = 1.0f;
  for (float v : fac) factor = std::fmax(factor, v);
  if (fac.size() != static_cast<size_t>(c.head_dim / 2)) {
    throw Error(f.source + ": GGUF tensor 'rope_freqs.weight' has " + std::to_string(fac.size()) +
                " values, head_dim/2 = " + std::to_string(c.head_dim / 2));
  }
  if (factor <= 1.0f + 1e-6f) return;
  RopeScaling& r = c.rope_scaling;
  r.type = "llama3";
  r.factor = factor;
  const std::string arch = c.arch;
  r.original_max_position_embeddings =
      meta_int(f, arch + ".rope.scaling.original_context_length", 8192, false);
  const double old_ctx = static_cast<double>(r.original_max_position_embeddings);
  std::vector<std::pair<double, double>> pts;  // (old_ctx / wavelen, smooth)
  for (size_t k = 0; k < fac.size(); ++k) {
    const double v = fac[k];
    if (v > 1.0 + 1e-4 && v < factor * (1.0 - 1e-4)) {
      const float freq =
          1.0f / std::pow(c.rope_theta, static_cast<float>(2 * k) / static_cast<float>(c.head_dim));
      const double x = old_ctx * freq / (2.0 * M_PI);
      const double s = (1.0 / v - 1.0 / factor) / (1.0 - 1.0 / factor);
      pts.emplace_back(x, s);
    }
  }
  double lf = 1.0, hf = 4.0;
  if (pts.size() >= 2 && std::fabs(pts.back().second - pts.front().second) > 1e-6) {
    // s = (x - lf) / (hf - lf) is linear in x: fit from the two extreme points.
    const auto [x0, s0] = pts.front();
    const auto [x1, s1] = pts.back();
    const double slope = (s1 - s0) / (x1 - x0);  // = 1 / (hf - lf)
    lf = x0 - s0 / slope;
    hf = lf + 1.0 / slope;
  } else if (pts.size() == 1 && pts[0].second > 1e-6) {
    hf = lf + (pts[0].first - lf) / pts[0].second;
  }
  r.low_freq_factor = static_cast<float>(lf);
  r.high_freq_factor = static_cast<float>(hf);
  const std::vector<float> again = llama3_rope_factors(c);
  for (size_t k = 0; k < fac.size(); ++k) {
    if (std::fabs(again[k] - fac[k]) > 1e-3f * std::fabs(fac[k])) {
      throw Error(f.source + ": GGUF tensor 'rope_freqs.weight' value " + std::to_string(k) +
                  " = " + std::to_string(fac[k]) +
                  " does not follow the llama3 rope formula (recovered factor " +
                  std::to_string(r.factor) + ", low " + std::to_string(lf) + ", high " +
                  std::to_string(hf) + ")");
    }
  }
}

std::vector<std::string> string_array(const GgufFile& f, const std::string& key) {
  const GgufValue* v = f.find(key);
  if (!v) throw Error(f.source + ": GGUF: missing metadata key '" + key + "'");
  if (v->type != GgufType::array || v->elem != GgufType::string) {
    throw Error(f.source + ": GGUF: key '" + key + "' is not an array of strings");
  }
  std::vector<std::string> out;
  out.reserve(v->items.size());
  for (const auto& it : v->items) out.push_back(it.s);
  return out;
}

TokenizerData gguf_tokenizer(const GgufFile& f) {
  TokenizerData t;
  const std::string model = f.get_string("tokenizer.ggml.model");
  if (model != "gpt2") {
    throw Error(f.source + ": GGUF: tokenizer.ggml.model '" + model +
                "' is not supported (only byte-level BPE 'gpt2')");
  }
  const std::string pre = f.find("tokenizer.ggml.pre") ? f.get_string("tokenizer.ggml.pre") : "";
  if (pre == "llama-bpe" || pre == "llama3") {
    t.pre_tokenizer = "llama3";
    t.ignore_merges = true;  // llama.cpp does the same for this pre-tokenizer
  } else if (pre == "qwen2") {
    t.pre_tokenizer = "qwen2";
    t.normalizer = "NFC";  // Qwen2's tokenizer.json normalizes; llama.cpp skips it, HF does not
  } else if (pre == "smollm") {
    t.pre_tokenizer = "smollm";
  } else if (pre == "gpt-2" || pre == "gpt2" || pre == "default" || pre.empty()) {
    t.pre_tokenizer = "gpt2";
  } else {
    throw Error(f.source + ": GGUF: tokenizer.ggml.pre '" + pre +
                "' is not supported (llama-bpe, qwen2, smollm, gpt-2)");
  }
  t.vocab = string_array(f, "tokenizer.ggml.tokens");
  if (t.vocab.empty() || t.vocab.size() > (size_t{1} << 24)) {
    throw Error(f.source + ": GGUF: tokenizer.ggml.tokens has " + std::to_string(t.vocab.size()) +
                " entries");
  }
  if (f.find("tokenizer.ggml.merges")) {
    for (const std::string& m : string_array(f, "tokenizer.ggml.merges")) {
      const size_t sp = m.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 == m.size()) {
        throw Error(f.source + ": GGUF: malformed merge '" + m + "'");
      }
      t.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
    }
  }
  if (const GgufValue* types = f.find("tokenizer.ggml.token_type")) {
    if (types->type != GgufType::array || types->items.size() != t.vocab.size()) {
      throw Error(f.source + ": GGUF: tokenizer.ggml.token_type does not match the token count");
    }
    for (size_t i = 0; i < types->items.size(); ++i) {
      const int64_t ty = types->items[i].i;
      if (ty == 3 || ty == 4) t.special_ids.push_back(static_cast<int32_t>(i));  // control, user
    }
  }
  auto id = [&](const char* key) -> int32_t {
    if (!f.find(key)) return -1;
    const int64_t v = f.get_int(key);
    if (v < 0 || v >= static_cast<int64_t>(t.vocab.size())) {
      throw Error(f.source + ": GGUF: " + key + " = " + std::to_string(v) + " outside the vocab");
    }
    return static_cast<int32_t>(v);
  };
  t.bos_id = id("tokenizer.ggml.bos_token_id");
  t.eos_id = id("tokenizer.ggml.eos_token_id");
  if (const GgufValue* v = f.find("tokenizer.ggml.add_bos_token")) t.add_bos = v->b;
  if (f.find("tokenizer.chat_template")) t.chat_template = f.get_string("tokenizer.chat_template");
  return t;
}

LoadedModel gguf_to_model(const GgufFile& f) {
  LoadedModel m;
  m.source = f.source;
  ModelConfig& c = m.config;
  c.arch = f.get_string("general.architecture");
  if (c.arch != "llama" && c.arch != "qwen2" && c.arch != "qwen3") {
    throw Error(f.source + ": unsupported architecture '" + c.arch +
                "' (supported: " + supported_architectures() + ")");
  }
  const std::string a = c.arch + ".";
  c.hidden_size = meta_int(f, a + "embedding_length", 0, true);
  c.intermediate_size = meta_int(f, a + "feed_forward_length", 0, true);
  c.num_layers = meta_int(f, a + "block_count", 0, true);
  c.num_heads = meta_int(f, a + "attention.head_count", 0, true);
  c.num_kv_heads = meta_int(f, a + "attention.head_count_kv", c.num_heads, false);
  c.max_position_embeddings = meta_int(f, a + "context_length", 0, false);
  c.rms_norm_eps = meta_float(f, a + "attention.layer_norm_rms_epsilon", 1e-6f);
  c.rope_theta = meta_float(f, a + "rope.freq_base", 10000.0f);
  if (c.num_heads <= 0 || c.num_heads > 4096 || c.hidden_size <= 0) {
    throw Error(f.source + ": GGUF: bad head_count " + std::to_string(c.num_heads) +
                " or embedding_length " + std::to_string(c.hidden_size));
  }
  c.head_dim = meta_int(f, a + "attention.key_length", c.hidden_size / c.num_heads, false);
  if (f.find(a + "rope.scaling.type")) {
    const std::string st = f.get_string(a + "rope.scaling.type");
    if (st != "none" && st != "llama3") {
      throw Error(f.source + ": GGUF: rope scaling type '" + st + "' is not supported (llama3)");
    }
  }
  c.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
  c.attention_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.qk_norm = f.find_tensor("blk.0.attn_q_norm.weight") != nullptr;
  if (c.num_layers <= 0 || c.num_layers > 4096) {
    throw Error(f.source + ": GGUF: block_count " + std::to_string(c.num_layers) + " out of range");
  }
  const GgufTensorInfo* emb = f.find_tensor("token_embd.weight");
  if (!emb) throw Error(f.source + ": GGUF: missing tensor 'token_embd.weight'");
  c.vocab_size = static_cast<int64_t>(emb->dims.size() == 2 ? emb->dims[1] : 0);

  // Name every tensor before dequantizing anything: bad files fail fast and cheaply.
  std::vector<std::pair<const GgufTensorInfo*, std::string>> todo;
  for (const auto& t : f.tensors)
    todo.emplace_back(&t, canonical_name(f.source, t.name, c.num_layers));

  for (const auto& [t, name] : todo) {
    std::vector<float> data = f.dequantize(*t);
    std::vector<int64_t> shape(t->dims.rbegin(), t->dims.rend());
    if (name.empty()) {
      rope_from_factors(f, data, c);
      continue;
    }
    if (c.arch == "llama") {
      const bool is_q = name.find("self_attn.q_proj.") != std::string::npos;
      const bool is_k = name.find("self_attn.k_proj.") != std::string::npos;
      if (is_q || is_k) {
        const int64_t rows = shape[0];
        const int64_t cols = shape.size() == 2 ? shape[1] : 1;
        try {
          data = unpermute_qk_rows(data, rows, cols, is_q ? c.num_heads : c.num_kv_heads);
        } catch (const Error& e) {
          throw Error(f.source + ": GGUF tensor '" + t->name + "': " + e.what());
        }
      }
    }
    m.tensors[name] = FloatTensor{std::move(shape), std::move(data)};
  }
  if (f.find("tokenizer.ggml.model")) m.tokenizer = gguf_tokenizer(f);
  check_model(m);
  return m;
}

}  // namespace

LoadedModel load_gguf(const std::string& path) {
  return gguf_to_model(open_gguf(path));
}

TokenizerData load_gguf_tokenizer(const std::string& path) {
  return gguf_tokenizer(open_gguf(path));
}

LoadedModel load_gguf_bytes(std::span<const uint8_t> bytes, const std::string& name) {
  return gguf_to_model(parse_gguf(bytes, name));
}

}  // namespace sharq::model
