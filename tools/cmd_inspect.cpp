// `sharq inspect -m MODEL`: architecture, config values, parameter count and the tensor list of
// a GGUF file or HF folder as loaded (every tensor is float32 once loaded). Not a validator beyond
// what the loader checks.
#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "sharq/engine/model.h"
#include "sharq/model/load.h"

namespace sharq::tools {
namespace {

struct InspectArgs {
  std::string model;
};

int run_inspect(const InspectArgs& a) {
  const model::LoadedModel m = model::load_model(a.model);
  const model::ModelConfig& c = m.config;
  std::printf("model         %s\n", m.source.c_str());
  std::printf("architecture  %s\n", c.arch.c_str());
  std::printf("vocab_size    %lld\n", static_cast<long long>(c.vocab_size));
  std::printf("hidden_size   %lld\n", static_cast<long long>(c.hidden_size));
  std::printf("intermediate  %lld\n", static_cast<long long>(c.intermediate_size));
  std::printf("layers        %lld\n", static_cast<long long>(c.num_layers));
  std::printf("heads         %lld (kv heads %lld, head_dim %lld)\n",
              static_cast<long long>(c.num_heads), static_cast<long long>(c.num_kv_heads),
              static_cast<long long>(c.head_dim));
  std::printf("max_positions %lld\n", static_cast<long long>(c.max_position_embeddings));
  std::printf("rms_norm_eps  %g\n", static_cast<double>(c.rms_norm_eps));
  std::printf("rope_theta    %g\n", static_cast<double>(c.rope_theta));
  if (!c.rope_scaling.type.empty()) {
    std::printf("rope_scaling  %s factor %g low %g high %g original_max %lld\n",
                c.rope_scaling.type.c_str(), static_cast<double>(c.rope_scaling.factor),
                static_cast<double>(c.rope_scaling.low_freq_factor),
                static_cast<double>(c.rope_scaling.high_freq_factor),
                static_cast<long long>(c.rope_scaling.original_max_position_embeddings));
  }
  std::printf("tied_embed    %s\n", c.tie_word_embeddings ? "yes" : "no");
  std::printf("qkv_bias      %s\n", c.attention_bias ? "yes" : "no");
  std::printf("qk_norm       %s\n", c.qk_norm ? "yes" : "no");
  const auto& t = m.tokenizer;
  std::printf("tokenizer     %s, %zu tokens, %zu merges, bos %d, eos %d, add_bos %s\n",
              t.pre_tokenizer.c_str(), t.vocab.size(), t.merges.size(), t.bos_id, t.eos_id,
              t.add_bos ? "yes" : "no");
  const int64_t params = engine::parameter_count(m);
  std::printf("parameters    %lld (%.1f M)\n", static_cast<long long>(params),
              static_cast<double>(params) / 1e6);
  std::printf("tensors       %zu (dtype as loaded: f32)\n", m.tensors.size());
  for (const auto& [name, tensor] : m.tensors) {
    std::string shape = "(";
    for (size_t i = 0; i < tensor.shape.size(); ++i) {
      shape += (i ? ", " : "") + std::to_string(tensor.shape[i]);
    }
    std::printf("  %-52s %-16s f32\n", name.c_str(), (shape + ")").c_str());
  }
  return 0;
}

}  // namespace

Action register_inspect(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* sub = app.add_subcommand("inspect", "Show a model's architecture, config and tensors");
  sub->add_option("-m,--model", args->model, "GGUF file or Hugging Face folder")->required();
  return [args] { return run_inspect(*args); };
}

}  // namespace sharq::tools
