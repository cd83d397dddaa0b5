// Token-level accuracy metrics in double precision (log-sum-exp with the max subtracted).
#include "sharq/eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace sharq::eval {
namespace {

// Returns log(sum exp(x_i)) over V logits.
double log_sum_exp(const float* x, int64_t v) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < v; ++i) m = std::max(m, static_cast<double>(x[i]));
  double s = 0.0;
  for (int64_t i = 0; i < v; ++i) s += std::exp(static_cast<double>(x[i]) - m);
  return m + std::log(s);
}

}  // namespace

double token_nll(const float* logits, int64_t vocab, int32_t target) {
  return log_sum_exp(logits, vocab) - static_cast<double>(logits[target]);
}

double kl_divergence(const float* ref, const float* test, int64_t vocab) {
  const double lse_p = log_sum_exp(ref, vocab), lse_q = log_sum_exp(test, vocab);
  double kl = 0.0;
  for (int64_t i = 0; i < vocab; ++i) {
    const double lp = static_cast<double>(ref[i]) - lse_p;
    const double lq = static_cast<double>(test[i]) - lse_q;
    kl += std::exp(lp) * (lp - lq);
  }
  return std::max(kl, 0.0);  // rounding can make an exact match slightly negative
}

int64_t argmax(const float* logits, int64_t vocab) {
  int64_t best = 0;
  for (int64_t i = 1; i < vocab; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

double percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const double pos = q * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (pos - static_cast<double>(lo));
}

double gap_recovery(double ppl_mode, double ppl_base, double ppl_ref) {
  const double gap = ppl_base - ppl_ref;
  if (gap == 0.0) return 0.0;
  return (ppl_base - ppl_mode) / gap;
}

void TokenStats::add(const float* logits, const float* ref_logits, int64_t vocab, int32_t target) {
  nll_sum += token_nll(logits, vocab, target);
  ++tokens;
  if (ref_logits) {
    kl.push_back(kl_divergence(ref_logits, logits, vocab));
    top1_agree += argmax(logits, vocab) == argmax(ref_logits, vocab);
  }
}

double TokenStats::perplexity() const {
  return tokens ? std::exp(nll_sum / static_cast<double>(tokens)) : 0.0;
}

double TokenStats::kl_mean() const {
  if (kl.empty()) return 0.0;
  double s = 0.0;
  for (double v : kl) s += v;
  return s / static_cast<double>(kl.size());
}

double TokenStats::kl_p99() const {
  return percentile(kl, 0.99);
}

double TokenStats::top1_agreement() const {
  return kl.empty() ? 0.0 : static_cast<double>(top1_agree) / static_cast<double>(kl.size());
}

}  // namespace sharq::eval
