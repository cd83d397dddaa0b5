// What a model loader hands the engine: architecture config, float32 tensors under canonical
// Hugging Face names, and the tokenizer description. Format-neutral (GGUF and HF folders both
// produce it). Not the forward pass (engine/) and not the quantized weights (weights.h).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sharq::model {

// Llama-3 "llama3" rope_scaling (all zero / type empty when absent).
struct RopeScaling {
  std::string type;  // "" or "llama3"
  float factor = 0.0f;
  float low_freq_factor = 0.0f;
  float high_freq_factor = 0.0f;
  int64_t original_max_position_embeddings = 0;
};

struct ModelConfig {
  std::string arch;  // "llama", "qwen2" or "qwen3"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_heads unless the config says otherwise (qwen3)
  int64_t max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (qwen2)
  bool qk_norm = false;         // per-head RMSNorm on q and k (qwen3)
};

// A dense float32 tensor, row-major; for a linear weight, shape = {out_features, in_features}.
struct FloatTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Tokenizer description extracted from tokenizer.json / tokenizer_config.json or GGUF metadata.
struct TokenizerData {
  std::string pre_tokenizer;           // "gpt2", "llama3", "qwen2" or "smollm" (gpt2 + digits)
  std::vector<std::string> vocab;      // id -> token string (byte-level BPE alphabet)
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::vector<int32_t> special_ids;    // added/special tokens matched verbatim before BPE
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  bool add_bos = false;
  std::string chat_template;           // raw template text (may be empty)
  bool ignore_merges = false;          // a whole pre-token found in vocab is one token (llama3)
  std::string normalizer;              // "" or "NFC" (qwen2), applied outside special tokens
};

// Canonical tensor names (HF Llama/Qwen naming), L = layer index:
//   model.embed_tokens.weight, model.norm.weight, lm_head.weight (absent when tied),
//   model.layers.L.input_layernorm.weight, model.layers.L.post_attention_layernorm.weight,
//   model.layers.L.self_attn.{q,k,v,o}_proj.weight, model.layers.L.self_attn.{q,k,v}_proj.bias,
//   model.layers.L.self_attn.{q,k}_norm.weight, model.layers.L.mlp.{gate,up,down}_proj.weight.
// GGUF loaders undo llama.cpp's q/k row permutation so every tensor matches the HF layout.
struct LoadedModel {
  ModelConfig config;
  std::map<std::string, FloatTensor> tensors;
  TokenizerData tokenizer;
  std::string source;  // path it came from, for messages
};

}  // namespace sharq::model
