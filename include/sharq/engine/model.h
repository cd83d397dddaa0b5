// The decoder of the supported architectures (llama, qwen2, qwen3) prepared for one mode on one
// backend: every decoder linear quantized once, everything else read in place from the
// LoadedModel. Not the forward state (engine/session.h) and not a loader (model/load.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sharq/engine/backend.h"
#include "sharq/model/loaded_model.h"
#include "sharq/modes.h"

namespace sharq::engine {

// What differs between the architectures; everything else is the shared Llama decoder.
struct ArchSpec {
  const char* name;
  bool qkv_bias;  // q/k/v projections carry a bias (qwen2)
  bool qk_norm;   // per-head RMSNorm on q and k before RoPE (qwen3)
};
// Throws sharq::Error naming the supported architectures for an unknown one.
const ArchSpec& arch_spec(const std::string& arch);

struct LayerWeights {
  const float* input_norm = nullptr;  // (D)
  const float* post_norm = nullptr;   // (D)
  const float* q_norm = nullptr;      // (head_dim) or null
  const float* k_norm = nullptr;      // (head_dim) or null
  std::unique_ptr<LinearWeights> q, k, v, o, gate, up, down;
};

class Model {
 public:
  // Validates the config and every tensor shape, then quantizes the decoder linears under
  // `mode`. `src` and `backend` must outlive the Model (embeddings and norms are not copied).
  // progress(layer, num_layers) is called after each layer is prepared, if set.
  Model(const model::LoadedModel& src, Mode mode, Backend& backend,
        const std::function<void(int64_t, int64_t)>& progress = {});
  // Every linear unquantized (float32 weights and activations): the reference that HF
  // transformers' float32 logits are compared with. Not one of the 13 modes.
  static Model float32(const model::LoadedModel& src, Backend& backend);

  const model::ModelConfig& config() const { return cfg_; }
  const ArchSpec& arch() const { return *arch_; }
  Mode mode() const { return mode_; }  // meaningless when !quantized()
  bool quantized() const { return quantized_; }
  std::string mode_label() const;  // the mode's name, or "f32"
  Backend& backend() const { return *backend_; }
  int64_t q_dim() const { return cfg_.num_heads * cfg_.head_dim; }
  int64_t kv_dim() const { return cfg_.num_kv_heads * cfg_.head_dim; }
  // Resident on the backend (Backend::resident), like every pointer below.
  const float* inv_freq() const { return inv_freq_; }         // (head_dim / 2)
  const float* embed() const { return embed_; }               // (V, D)
  const float* final_norm() const { return final_norm_; }     // (D)
  const LinearWeights& lm_head() const { return *lm_head_; }  // (V, D); the embedding if tied
  const std::vector<LayerWeights>& layers() const { return layers_; }
  // Memory the backend holds for the decoder linears, and for the LM head.
  int64_t linear_weight_bytes() const;
  int64_t lm_head_bytes() const { return lm_head_->bytes; }

  // hidden: (rows, D) after the final norm -> logits: (rows, V), float32 (not quantized by the
  // mode), both in backend memory.
  void logits(const float* hidden, int64_t rows, float* out) const;

 private:
  Model(const model::LoadedModel& src, Mode mode, bool quantized, Backend& backend,
        const std::function<void(int64_t, int64_t)>& progress);

  model::ModelConfig cfg_;
  bool quantized_ = true;
  const ArchSpec* arch_ = nullptr;
  Mode mode_;
  Backend* backend_;
  std::vector<float> inv_freq_host_;  // must not move: the CPU's resident() keeps its pointer
  const float* inv_freq_ = nullptr;
  const float* embed_ = nullptr;
  const float* final_norm_ = nullptr;
  std::unique_ptr<LinearWeights> lm_head_;
  std::vector<LayerWeights> layers_;
};

// Sum of the elements of every tensor (the parameter count as stored; a tied LM head counts once).
int64_t parameter_count(const model::LoadedModel& m);

}  // namespace sharq::engine
