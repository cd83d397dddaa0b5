// Model loading: a .gguf file or a Hugging Face folder -> LoadedModel (config, float32 tensors
// under canonical HF names, tokenizer data). Supported architectures: llama, qwen2, qwen3.
// Not the forward pass (engine/) and not quantization to sharq formats (weights.h).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "sharq/model/loaded_model.h"

namespace sharq::model {

// A path ending in .gguf (or any regular file) is read as GGUF; a directory as an HF folder.
// Throws sharq::Error with the file, tensor and offset on anything malformed or unsupported.
LoadedModel load_model(const std::string& path);

LoadedModel load_gguf(const std::string& path);
// The same from bytes held by the caller (fuzzing, tests); `name` is used in messages.
LoadedModel load_gguf_bytes(std::span<const uint8_t> bytes, const std::string& name);

// Only the tokenizer.ggml.* metadata of a GGUF file (no tensor is read).
TokenizerData load_gguf_tokenizer(const std::string& path);

// config.json, model.safetensors (or shards via model.safetensors.index.json), tokenizer.json,
// tokenizer_config.json.
LoadedModel load_hf_folder(const std::string& dir);

// The pre-tokenizer Split regexes of Llama-3 and Qwen2 tokenizer.json files, verbatim.
const char* llama3_split_regex();
const char* qwen2_split_regex();

// config.json text -> ModelConfig (architectures[0] must be Llama/Qwen2/Qwen3ForCausalLM).
ModelConfig parse_hf_config(const std::string& config_json, const std::string& name);

// tokenizer.json (+ tokenizer_config.json text, may be empty) -> TokenizerData. config_bos/eos
// are config.json's bos/eos_token_id, used when tokenizer_config.json names none (-1: none).
TokenizerData parse_tokenizer_json(const std::string& tokenizer_json,
                                   const std::string& tokenizer_config_json,
                                   const std::string& name, int32_t config_bos = -1,
                                   int32_t config_eos = -1);

// Checks the config for sane positive sizes and that `tensors` holds exactly the canonical
// tensors the config implies, with the right shapes. Throws naming the tensor and shapes.
void check_model(const LoadedModel& m);

// "llama, qwen2, qwen3": for messages.
std::string supported_architectures();

// The canonical per-head row order of q_proj/k_proj from llama.cpp's rope permutation: row
// h*D + 2*j + i of the GGUF tensor is row h*D + i*D/2 + j of the HF one (D = rows / n_heads).
// x: (rows, cols) row-major; returns the HF-ordered copy.
std::vector<float> unpermute_qk_rows(const std::vector<float>& x, int64_t rows, int64_t cols,
                                     int64_t n_heads);
// The inverse (HF -> GGUF order), for writers.
std::vector<float> permute_qk_rows(const std::vector<float>& x, int64_t rows, int64_t cols,
                                   int64_t n_heads);

// Llama-3 rope frequency factors per rotary pair (head_dim / 2 values), as convert_hf_to_gguf
// stores them in the rope_freqs tensor.
std::vector<float> llama3_rope_factors(const ModelConfig& c);

}  // namespace sharq::model
