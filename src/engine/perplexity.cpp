// Windowed perplexity: each window is one prefill from an empty cache; the LM head runs over
// chunks of rows so the logits buffer stays (logits_rows, V). Not a sliding-window (strided)
// evaluation.
#include "sharq/engine/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "sharq/engine/session.h"
#include "sharq/error.h"
#include "sharq/parallel.h"

namespace sharq::engine {

PerplexityResult perplexity(const Model& m, std::span<const int32_t> tokens,
                            const PerplexityOptions& opt,
                            const std::function<void(const PerplexityProgress&)>& progress) {
  if (opt.ctx < 2) throw Error("perplexity: ctx must be at least 2");
  int64_t n = static_cast<int64_t>(tokens.size());
  if (opt.max_tokens > 0) n = std::min(n, opt.max_tokens);
  const int64_t windows = n / opt.ctx;
  if (windows == 0) {
    throw Error("perplexity: " + std::to_string(n) + " tokens do not fill one window of ctx " +
                std::to_string(opt.ctx));
  }
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t v = m.config().vocab_size;
  const int64_t rows_max = std::max<int64_t>(1, opt.logits_rows);
  Session s(m, opt.ctx);
  std::vector<float> logits(static_cast<size_t>(rows_max * v));
  std::vector<double> row_nll(static_cast<size_t>(rows_max));
  double nll = 0.0;
  PerplexityResult r;
  for (int64_t w = 0; w < windows; ++w) {
    const auto win = tokens.subspan(static_cast<size_t>(w * opt.ctx), static_cast<size_t>(opt.ctx));
    for (int32_t id : win) {
      if (id < 0 || id >= v) {
        throw Error("perplexity: token id " + std::to_string(id) + " in window " +
                    std::to_string(w) + " is outside the vocabulary [0, " + std::to_string(v) +
                    ")");
      }
    }
    s.reset();
    s.forward_hidden(win);
    // Row i predicts token i + 1; the last row predicts nothing inside the window.
    for (int64_t i0 = 0; i0 < opt.ctx - 1; i0 += rows_max) {
      const int64_t rows = std::min(rows_max, opt.ctx - 1 - i0);
      s.logits(i0, rows, logits.data());
      // Rows in parallel, summed in order afterwards so the result does not depend on threads.
      parallel_for(rows, m.backend().threads(), [&](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; ++i) {
          const float* row = logits.data() + i * v;
          const int32_t target = win[static_cast<size_t>(i0 + i + 1)];
          const float mx = *std::max_element(row, row + v);
          double sum = 0.0;
          for (int64_t j = 0; j < v; ++j) {
            // expf of anything below -88 underflows to 0 (through libm's slow path).
            const float z = row[j] - mx;
            if (z > -88.0f) sum += std::exp(z);
          }
          row_nll[static_cast<size_t>(i)] = std::log(sum) + mx - row[target];
        }
      });
      for (int64_t i = 0; i < rows; ++i) nll += row_nll[static_cast<size_t>(i)];
    }
    r.tokens_evaluated += opt.ctx - 1;
    r.windows = w + 1;
    if (progress) {
      progress({w + 1, windows, r.tokens_evaluated,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()});
    }
  }
  r.mean_nll = nll / static_cast<double>(r.tokens_evaluated);
  r.perplexity = std::exp(r.mean_nll);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace sharq::engine
