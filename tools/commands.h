// Registration hooks of the CLI subcommands; each cmd_*.cpp adds one subcommand to the app.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace sharq::tools {

// --kv-cache f32|f16 on an engine subcommand (the backend's Backend::set_kv_cache).
inline void add_kv_cache_option(CLI::App* sub, std::string* value) {
  sub->add_option("--kv-cache", *value,
                  "KV cache format: f32 (default) or f16 (K and V rounded to FP16 as they are "
                  "stored; on the GPU half the cache memory and the bytes attention reads, on the "
                  "CPU the same values in float32 storage)")
      ->check(CLI::IsMember({"f32", "f16"}));
}

// Each returns the action to run when its subcommand was chosen.
using Action = std::function<int()>;
Action register_quantize(CLI::App& app);
Action register_demo(CLI::App& app);
// Engine tools (built when the model loader and tokenizer libraries exist: SHARQ_ENGINE_TOOLS).
Action register_generate(CLI::App& app);
Action register_perplexity(CLI::App& app);
Action register_inspect(CLI::App& app);
Action register_logits(CLI::App& app);
Action register_eval(CLI::App& app);
Action register_bench(CLI::App& app);

}  // namespace sharq::tools
