// `sharq quantize --mode MODE --input X.npy --output-prefix P [--weight] [--stats]`
// Quantizes a float32 matrix as an activation (default) or a weight and writes P.*.npy.
#include <cstdio>
#include <string>

#include "commands.h"
#include "sharq/decompose.h"
#include "sharq/modes.h"
#include "sharq/npy.h"
#include "sharq/parallel.h"
#include "sharq/stats.h"
#include "sharq/weights.h"

namespace sharq::tools {
namespace {

struct QuantizeArgs {
  std::string mode;
  std::string input;
  std::string prefix;
  bool weight = false;
  bool stats = false;
  int threads = 0;
};

int run_quantize(const QuantizeArgs& a) {
  const Mode mode = mode_from_name(a.mode);
  const int threads = a.threads > 0 ? a.threads : default_threads();
  const NpyMatrix x = read_npy_f32(a.input);
  const std::string name = a.input;
  const int64_t n = x.rows * x.cols;
  if (a.weight) {
    const QuantizedWeight w = quantize_weight(mode, x.data.data(), x.rows, x.cols, name, threads);
    std::vector<float> deq(static_cast<size_t>(n));
    dequantize_weight(w, deq.data(), threads);
    write_npy_f32(a.prefix + ".dequant.npy", deq.data(), x.rows, x.cols);
    if (a.stats) {
      std::printf("%-16s %-8s %14s\n", "mode", "tensor", "rel_fro_error");
      std::printf("%-16s %-8s %14.6e\n", a.mode.c_str(), "weight",
                  relative_frobenius_error(deq.data(), x.data.data(), n));
    }
    return 0;
  }
  const ActivationQuant q = quantize_activation(mode, x.data.data(), x.rows, x.cols, name, threads);
  write_npy_f32(a.prefix + ".dequant.npy", q.dequant.data(), x.rows, x.cols);
  if (is_decomposition(mode)) {
    write_npy_f32(a.prefix + ".sparse.npy", q.sparse.data(), x.rows, x.cols);
    write_npy_f32(a.prefix + ".residual.npy", q.residual.data(), x.rows, x.cols);
  }
  if (a.stats) {
    std::printf("%-16s %-10s %14s %16s\n", "mode", "tensor", "rel_fro_error", "backbone_energy");
    const double err = relative_frobenius_error(q.dequant.data(), x.data.data(), n);
    if (is_decomposition(mode)) {
      std::printf("%-16s %-10s %14.6e %16.6f\n", a.mode.c_str(), "activation", err,
                  kept_energy_share(x.data.data(), q.keep.data(), n));
    } else {
      std::printf("%-16s %-10s %14.6e %16s\n", a.mode.c_str(), "activation", err, "-");
    }
  }
  return 0;
}

}  // namespace

Action register_quantize(CLI::App& app) {
  auto args = std::make_shared<QuantizeArgs>();
  CLI::App* sub = app.add_subcommand("quantize", "Quantize a 2-D float32 .npy matrix in a mode");
  sub->add_option("--mode", args->mode, "Mode (e.g. sharq-nvfp4, nvfp4, mxfp4, hif4, fp8, ...)")
      ->required();
  sub->add_option("--input", args->input, "Input .npy (float32, C order, rows x K)")->required();
  sub->add_option(
         "--output-prefix", args->prefix,
         "Writes PREFIX.dequant.npy (+ .sparse.npy, .residual.npy for decomposition modes)")
      ->required();
  sub->add_flag("--weight", args->weight,
                "Quantize as a weight matrix (N x K) by the mode's weight rule");
  sub->add_flag("--stats", args->stats,
                "Print the relative Frobenius error and backbone energy share");
  sub->add_option("--threads", args->threads, "Worker threads (default: all cores)");
  return [args] { return run_quantize(*args); };
}

}  // namespace sharq::tools
