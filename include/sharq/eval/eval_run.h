// The accuracy study driver behind `sharq eval`: perplexity, KL divergence and top-1 agreement
// of every mode (and experiment variant) against bf16 over the same windows, plus per-layer
// errors on inputs captured in the bf16 forward. Not the CLI (tools/cmd_eval.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "sharq/decompose.h"
#include "sharq/eval/report.h"
#include "sharq/model/loaded_model.h"
#include "sharq/modes.h"

namespace sharq::eval {

struct EvalOptions {
  std::vector<Mode> modes;        // bf16 always runs first, as the reference
  std::vector<Variant> variants;  // each evaluated on variant_mode as an extra row
  Mode variant_mode = Mode::kSharqNvfp4;
  int64_t ctx = 512;           // window length; windows = min(tokens, max_tokens) / ctx
  int64_t max_tokens = 0;      // 0 = every token of the text
  int64_t layer_tokens = 128;  // rows of each layer input used for per-layer stats; 0 = none
  int threads = 0;             // 0 = default_threads()
};

struct EvalProgress {
  std::string what;  // "bf16", a mode or variant name, or "layers"
  int64_t done = 0;  // steps done of `total` over the whole run
  int64_t total = 0;
  double seconds = 0.0;
};

// Throws sharq::Error when not one window of ctx tokens fits.
EvalReport run_eval(const model::LoadedModel& m, std::span<const int32_t> tokens,
                    const EvalOptions& opt,
                    const std::function<void(const EvalProgress&)>& progress = {});

}  // namespace sharq::eval
