// `sharq demo`: quantizes an LLM-like synthetic activation and weight in every mode and prints
// the per-mode error table (activation, weight, and linear-layer output vs float32).
#include <cstdio>
#include <string>
#include <vector>

#include "commands.h"
#include "sharq/cpu/linear.h"
#include "sharq/decompose.h"
#include "sharq/modes.h"
#include "sharq/parallel.h"
#include "sharq/stats.h"
#include "sharq/synthetic.h"
#include "sharq/weights.h"

namespace sharq::tools {
namespace {

struct DemoArgs {
  int64_t tokens = 256;
  int64_t k = 4096;
  int64_t n = 1024;
  uint64_t seed = 1;
};

int run_demo(const DemoArgs& a) {
  const int threads = default_threads();
  const std::vector<float> x = synthetic_activation(a.tokens, a.k, a.seed);
  const std::vector<float> w = synthetic_weight(a.n, a.k, a.seed + 1);
  std::vector<float> y_ref(static_cast<size_t>(a.tokens * a.n));
  cpu::linear_f32(x.data(), w.data(), nullptr, y_ref.data(), a.tokens, a.n, a.k);
  std::printf("LLM-like activation (%lld x %lld, outlier channels) times weight (%lld x %lld)\n",
              static_cast<long long>(a.tokens), static_cast<long long>(a.k),
              static_cast<long long>(a.n), static_cast<long long>(a.k));
  std::printf("%-16s %12s %12s %12s %10s\n", "mode", "act_err", "weight_err", "output_err",
              "backbone");
  std::vector<float> wq(w.size()), y(y_ref.size());
  for (Mode m : all_modes()) {
    const ActivationQuant q = quantize_activation(m, x.data(), a.tokens, a.k, "demo.x", threads);
    const QuantizedWeight qw = quantize_weight(m, w.data(), a.n, a.k, "demo.w", threads);
    dequantize_weight(qw, wq.data(), threads);
    cpu::linear_f32(q.dequant.data(), wq.data(), nullptr, y.data(), a.tokens, a.n, a.k);
    const int64_t nx = a.tokens * a.k;
    std::string backbone = "-";
    if (is_decomposition(m)) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.3f", kept_energy_share(x.data(), q.keep.data(), nx));
      backbone = buf;
    }
    std::printf("%-16s %12.4e %12.4e %12.4e %10s\n", std::string(mode_name(m)).c_str(),
                relative_frobenius_error(q.dequant.data(), x.data(), nx),
                relative_frobenius_error(wq.data(), w.data(), static_cast<int64_t>(w.size())),
                relative_frobenius_error(y.data(), y_ref.data(), static_cast<int64_t>(y.size())),
                backbone.c_str());
  }
  return 0;
}

}  // namespace

Action register_demo(CLI::App& app) {
  auto args = std::make_shared<DemoArgs>();
  CLI::App* sub = app.add_subcommand("demo", "Per-mode error table on an LLM-like synthetic layer");
  sub->add_option("--tokens", args->tokens, "Activation rows (T)")->check(CLI::PositiveNumber);
  sub->add_option("--k", args->k, "Reduction size K (multiple of 64)")->check(CLI::PositiveNumber);
  sub->add_option("--n", args->n, "Output channels N")->check(CLI::PositiveNumber);
  sub->add_option("--seed", args->seed, "Random seed");
  return [args] { return run_demo(*args); };
}

}  // namespace sharq::tools
