// Accuracy metrics of the eval tool: per-token NLL, KL divergence of a mode's next-token
// distribution from the reference's, top-1 agreement, percentiles, gap recovery.
// Double-precision, scalar. Not the forward pass.
#pragma once

#include <cstdint>
#include <vector>

namespace sharq::eval {

// Returns -log softmax(logits)[target] for one row of V logits.
double token_nll(const float* logits, int64_t vocab, int32_t target);
// Returns KL(P || Q) = sum p (log p - log q) with P = softmax(ref), Q = softmax(test).
double kl_divergence(const float* ref_logits, const float* test_logits, int64_t vocab);
// Returns the index of the largest logit (lowest index on ties).
int64_t argmax(const float* logits, int64_t vocab);
// Returns the q-quantile (0..1) of values by linear interpolation between order statistics.
double percentile(std::vector<double> values, double q);
// Returns (ppl_base - ppl_mode) / (ppl_base - ppl_ref): the share of the quantization gap of a
// baseline that a mode recovers (1 = as good as the reference, 0 = no better than the baseline).
double gap_recovery(double ppl_mode, double ppl_base, double ppl_ref);

// Running per-mode accumulator of token-level statistics against the reference mode.
struct TokenStats {
  double nll_sum = 0.0;
  int64_t tokens = 0;
  std::vector<double> kl;  // one per token with a reference
  int64_t top1_agree = 0;

  void add(const float* logits, const float* ref_logits, int64_t vocab, int32_t target);
  double perplexity() const;
  double kl_mean() const;
  double kl_p99() const;
  double top1_agreement() const;
};

}  // namespace sharq::eval
