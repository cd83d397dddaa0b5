// Per-layer error of every mode against bf16 on the same captured input.
#include "sharq/eval/layer_stats.h"

#include <cmath>

#include "sharq/cpu/linear.h"
#include "sharq/decompose.h"
#include "sharq/merged_operand.h"
#include "sharq/stats.h"
#include "sharq/weights.h"

namespace sharq::eval {
namespace {

struct Operands {
  std::vector<float> x, w, y;
};

Operands run_mode(Mode m, const float* x, int64_t t, int64_t k, const float* w, int64_t n,
                  const std::string& layer, int threads) {
  Operands o;
  o.x.resize(static_cast<size_t>(t * k));
  o.w.resize(static_cast<size_t>(n * k));
  o.y.resize(static_cast<size_t>(t * n));
  fake_quantize_activation(m, x, t, k, o.x.data(), layer + ".input", threads);
  dequantize_weight(quantize_weight(m, w, n, k, layer + ".weight", threads), o.w.data(), threads);
  cpu::linear_f32(o.x.data(), o.w.data(), nullptr, o.y.data(), t, n, k);
  return o;
}

}  // namespace

LayerStats layer_stats(const std::string& layer, const float* x, int64_t t, int64_t k,
                       const float* w, int64_t n, const std::vector<Mode>& modes, int threads) {
  LayerStats s;
  s.layer = layer;
  s.tokens = t;
  s.k = k;
  s.n = n;
  const int64_t nx = t * k;
  double sq = 0.0, mx = 0.0;
  for (int64_t i = 0; i < nx; ++i) {
    sq += static_cast<double>(x[i]) * x[i];
    mx = std::max(mx, static_cast<double>(std::fabs(x[i])));
  }
  const double rms = std::sqrt(sq / static_cast<double>(std::max<int64_t>(nx, 1)));
  s.max_over_rms = rms > 0.0 ? mx / rms : 0.0;
  s.energy_4of8p = kept_energy_share(
      x, quantize_activation(Mode::kSharqNvfp4, x, t, k, layer, threads).keep.data(), nx);
  const ActivationQuant q24 = quantize_activation(Mode::kSharqNvfp4_24, x, t, k, layer, threads);
  s.energy_2of4 = kept_energy_share(x, q24.keep.data(), nx);
  const MergedLoStats lo = merged_lo_stats(q24);
  s.merged_lo_elements = static_cast<double>(lo.lo_elements) / static_cast<double>(nx);
  s.merged_lo_windows = static_cast<double>(lo.lo_windows) / static_cast<double>(lo.windows);
  s.merged_lo_cols = static_cast<double>(lo.lo_cols) / static_cast<double>(k);
  s.merged_lo_tile_cols = static_cast<double>(lo.lo_tile_cols) / static_cast<double>(lo.tiles * k);
  s.merged_lo_max_row = lo.max_lo_per_row;

  const Operands ref = run_mode(Mode::kBf16, x, t, k, w, n, layer, threads);
  for (Mode m : modes) {
    const Operands o = m == Mode::kBf16 ? ref : run_mode(m, x, t, k, w, n, layer, threads);
    s.modes.push_back({m, relative_frobenius_error(o.x.data(), ref.x.data(), nx),
                       relative_frobenius_error(o.y.data(), ref.y.data(), t * n)});
  }
  return s;
}

}  // namespace sharq::eval
