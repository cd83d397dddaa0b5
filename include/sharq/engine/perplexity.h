// Perplexity of a token stream under one prepared Model: non-overlapping windows of ctx tokens,
// each from an empty cache, NLL of tokens 1..ctx-1 given their prefix. Not a tokenizer (tokens
// come in) and not the multi-mode driver (tools/cmd_perplexity.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "sharq/engine/model.h"

namespace sharq::engine {

struct PerplexityOptions {
  int64_t ctx = 512;         // window length (one forward batch: one tensor scale per linear)
  int64_t max_tokens = 0;    // use at most this many tokens of the stream (0 = all)
  int64_t logits_rows = 64;  // LM head rows per chunk, bounds the (rows, V) logits buffer
};

struct PerplexityProgress {
  int64_t windows_done = 0;
  int64_t windows_total = 0;
  int64_t tokens_done = 0;  // tokens scored so far
  double seconds = 0.0;     // since the start
};

struct PerplexityResult {
  double perplexity = 0.0;  // exp(mean_nll)
  double mean_nll = 0.0;    // nats per scored token
  int64_t tokens_evaluated = 0;
  int64_t windows = 0;
  double seconds = 0.0;
};

// Windows = floor(min(tokens, max_tokens) / ctx); the tail shorter than ctx is dropped. Throws
// sharq::Error when not even one window fits. progress is called after every window.
PerplexityResult perplexity(const Model& m, std::span<const int32_t> tokens,
                            const PerplexityOptions& opt,
                            const std::function<void(const PerplexityProgress&)>& progress = {});

}  // namespace sharq::engine
