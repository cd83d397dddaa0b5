// Per-linear-layer error statistics of the eval tool: for one captured layer input X and weight
// W, each mode's activation and output error against bf16 on the same input, plus outlier
// statistics of X. Not the forward pass: the engine hands X and W over through its observer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sharq/modes.h"

namespace sharq::eval {

struct LayerModeError {
  Mode mode;
  double act_err = 0.0;  // ||X_mode - X_bf16||_F / ||X_bf16||_F
  double out_err = 0.0;  // ||Y_mode - Y_bf16||_F / ||Y_bf16||_F
};

struct LayerStats {
  std::string layer;  // e.g. "blk.3.mlp.down_proj"
  int64_t tokens = 0, k = 0, n = 0;
  double max_over_rms = 0.0;  // max|X| / RMS(X): how outlier-heavy the input is
  double energy_4of8p = 0.0;  // share of X's energy the 4:8p backbone mask keeps
  double energy_2of4 = 0.0;   // same for 2:4
  // The sharq-nvfp4-24 decomposition as one FP16 operand hi plus a sparse low part lo
  // (merged_operand.h): the share of elements, of decode windows (8 rows x 128 K), of columns
  // and of columns per 128-row tile (mean over the tiles) where lo != 0, and the most such
  // elements in one row.
  double merged_lo_elements = 0.0;
  double merged_lo_windows = 0.0;
  double merged_lo_cols = 0.0;
  double merged_lo_tile_cols = 0.0;
  int64_t merged_lo_max_row = 0;
  std::vector<LayerModeError> modes;
};

// x: (T, K) row-major layer input as captured in the bf16 forward (before its quantizer);
// w: (N, K) the layer's float32 weight. Quantizes both per mode (SPEC 5-6) and runs the GEMMs.
LayerStats layer_stats(const std::string& layer, const float* x, int64_t t, int64_t k,
                       const float* w, int64_t n, const std::vector<Mode>& modes, int threads);

}  // namespace sharq::eval
