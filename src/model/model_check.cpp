// Format-neutral pieces of loading: the canonical tensor set a config implies (check_model), the
// llama q/k rope row permutation and Llama-3 rope factors. Not format parsing.
#include <cmath>
#include <set>

#include "sharq/error.h"
#include "sharq/model/load.h"

namespace sharq::model {

namespace {

std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? " x " : "") + std::to_string(s[i]);
  return out + ")";
}

void check_positive(const std::string& src, const char* what, int64_t v, int64_t max) {
  if (v <= 0 || v > max) {
    throw Error(src + ": config " + what + " = " + std::to_string(v) + " out of range (1.." +
                std::to_string(max) + ")");
  }
}

}  // namespace

std::string supported_architectures() {
  return "llama, qwen2, qwen3";
}

void check_model(const LoadedModel& m) {
  const ModelConfig& c = m.config;
  const std::string& src = m.source;
  if (c.arch != "llama" && c.arch != "qwen2" && c.arch != "qwen3") {
    throw Error(src + ": unsupported architecture '" + c.arch +
                "' (supported: " + supported_architectures() + ")");
  }
  check_positive(src, "vocab_size", c.vocab_size, int64_t{1} << 24);
  check_positive(src, "hidden_size", c.hidden_size, int64_t{1} << 17);
  check_positive(src, "intermediate_size", c.intermediate_size, int64_t{1} << 19);
  check_positive(src, "num_layers", c.num_layers, 4096);
  check_positive(src, "num_heads", c.num_heads, 4096);
  check_positive(src, "num_kv_heads", c.num_kv_heads, 4096);
  check_positive(src, "head_dim", c.head_dim, 8192);
  if (c.num_heads % c.num_kv_heads != 0) {
    throw Error(src + ": num_heads " + std::to_string(c.num_heads) +
                " is not a multiple of num_kv_heads " + std::to_string(c.num_kv_heads));
  }
  if (c.head_dim % 2 != 0) throw Error(src + ": head_dim " + std::to_string(c.head_dim) + " odd");
  if (!(c.rms_norm_eps > 0.0f) || !(c.rope_theta > 0.0f) || !std::isfinite(c.rope_theta)) {
    throw Error(src + ": rms_norm_eps and rope_theta must be positive");
  }

  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t q_rows = c.num_heads * c.head_dim, kv_rows = c.num_kv_heads * c.head_dim;
  std::map<std::string, std::vector<int64_t>> want;
  want["model.embed_tokens.weight"] = {V, H};
  want["model.norm.weight"] = {H};
  if (!c.tie_word_embeddings) want["lm_head.weight"] = {V, H};
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    want[p + "input_layernorm.weight"] = {H};
    want[p + "post_attention_layernorm.weight"] = {H};
    want[p + "self_attn.q_proj.weight"] = {q_rows, H};
    want[p + "self_attn.k_proj.weight"] = {kv_rows, H};
    want[p + "self_attn.v_proj.weight"] = {kv_rows, H};
    want[p + "self_attn.o_proj.weight"] = {H, q_rows};
    if (c.attention_bias) {
      want[p + "self_attn.q_proj.bias"] = {q_rows};
      want[p + "self_attn.k_proj.bias"] = {kv_rows};
      want[p + "self_attn.v_proj.bias"] = {kv_rows};
    }
    if (c.qk_norm) {
      want[p + "self_attn.q_norm.weight"] = {c.head_dim};
      want[p + "self_attn.k_norm.weight"] = {c.head_dim};
    }
    want[p + "mlp.gate_proj.weight"] = {I, H};
    want[p + "mlp.up_proj.weight"] = {I, H};
    want[p + "mlp.down_proj.weight"] = {H, I};
  }
  for (const auto& [name, t] : m.tensors) {
    auto it = want.find(name);
    if (it == want.end()) throw Error(src + ": unexpected tensor '" + name + "' for this config");
    if (t.shape != it->second) {
      throw Error(src + ": tensor '" + name + "' has shape " + shape_text(t.shape) +
                  ", config implies " + shape_text(it->second));
    }
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    if (static_cast<int64_t>(t.data.size()) != n) {
      throw Error(src + ": tensor '" + name + "' holds " + std::to_string(t.data.size()) +
                  " values for shape " + shape_text(t.shape));
    }
  }
  for (const auto& [name, shape] : want) {
    if (!m.tensors.count(name)) {
      throw Error(src + ": missing tensor '" + name + "' " + shape_text(shape));
    }
  }
}

namespace {

// llama.cpp's convert script interleaves the two rotary halves of each q/k head: row 2j+i of
// head h holds HF row i*half+j. `to_hf` undoes that; otherwise it applies it.
std::vector<float> move_qk_rows(const std::vector<float>& x, int64_t rows, int64_t cols,
                                int64_t n_heads, bool to_hf, const char* what) {
  if (n_heads <= 0 || rows % n_heads != 0 || (rows / n_heads) % 2 != 0 ||
      static_cast<int64_t>(x.size()) != rows * cols) {
    throw Error(std::string(what) + ": " + shape_str(rows, cols) + " cannot split into " +
                std::to_string(n_heads) + " heads of even size");
  }
  const int64_t D = rows / n_heads, half = D / 2;
  std::vector<float> y(x.size());
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t i = 0; i < 2; ++i) {
      for (int64_t j = 0; j < half; ++j) {
        const int64_t gguf_row = h * D + 2 * j + i, hf_row = h * D + i * half + j;
        const int64_t src = to_hf ? gguf_row : hf_row, dst = to_hf ? hf_row : gguf_row;
        std::copy(x.begin() + src * cols, x.begin() + (src + 1) * cols, y.begin() + dst * cols);
      }
    }
  }
  return y;
}

}  // namespace

std::vector<float> unpermute_qk_rows(const std::vector<float>& x, int64_t rows, int64_t cols,
                                     int64_t n_heads) {
  return move_qk_rows(x, rows, cols, n_heads, true, "unpermute_qk_rows");
}

std::vector<float> permute_qk_rows(const std::vector<float>& x, int64_t rows, int64_t cols,
                                   int64_t n_heads) {
  return move_qk_rows(x, rows, cols, n_heads, false, "permute_qk_rows");
}

std::vector<float> llama3_rope_factors(const ModelConfig& c) {
  const RopeScaling& r = c.rope_scaling;
  const double old_ctx = static_cast<double>(r.original_max_position_embeddings);
  const double low_wavelen = old_ctx / r.low_freq_factor;
  const double high_wavelen = old_ctx / r.high_freq_factor;
  std::vector<float> out;
  for (int64_t i = 0; i < c.head_dim; i += 2) {
    // Same float32 frequency as the reference (torch float32 arange / dim, then pow).
    const float freq =
        1.0f / std::pow(c.rope_theta, static_cast<float>(i) / static_cast<float>(c.head_dim));
    const double wavelen = 2.0 * M_PI / freq;
    double v;
    if (wavelen < high_wavelen) {
      v = 1.0;
    } else if (wavelen > low_wavelen) {
      v = r.factor;
    } else {
      const double smooth =
          (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      v = 1.0 / ((1.0 - smooth) / r.factor + smooth);
    }
    out.push_back(static_cast<float>(v));
  }
  return out;
}

}  // namespace sharq::model
