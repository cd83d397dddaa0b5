// The merged SharQ operand's FP16 split and how sparse its low part is (merged_operand.h).
#include "sharq/merged_operand.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "sharq/codecs.h"
#include "sharq/error.h"
#include "sharq/formats.h"

namespace sharq {
namespace {

// Token rows and K columns of one decode window: the batched decode GEMM's n8 token tile times
// its 128-wide K step (gemm_decode_mma.cu).
constexpr int64_t kWindowRows = 8, kWindowCols = 128;

bool is_nvfp4(Format f) {
  return f == Format::kNvfp4G16 || f == Format::kNvfp4G32;
}

}  // namespace

MergedHalves merge_to_halves(float sp, float rs) {
  const float a = sp + rs;
  // RNE, the same rounding as CUDA's __float2half_rn (the test's oracle).
  const uint16_t hi = f16_bits(a);
  const float lo = a - f16_value(hi);  // exact: a and hi are within one FP16 ulp
  const uint16_t lo16 = f16_bits(lo);
  if (static_cast<double>(a) != static_cast<double>(sp) + static_cast<double>(rs) ||
      !std::isfinite(f16_value(hi)) || f16_value(lo16) != lo) {
    throw Error("merge_to_halves: " + std::to_string(sp) + " + " + std::to_string(rs) +
                " is not an FP16 hi + lo pair (not a SPEC 5 NVFP4 decode?)");
  }
  return {hi, lo16};
}

MergedLoStats merged_lo_stats(const ActivationQuant& q) {
  if (!is_decomposition(q.mode) || !is_nvfp4(q.sparse_q.format) || !is_nvfp4(q.dense_q.format)) {
    throw Error("merged_lo_stats: mode " + std::string(mode_name(q.mode)) +
                " has no NVFP4 backbone + residual to merge");
  }
  MergedLoStats s;
  s.rows = q.rows;
  s.cols = q.cols;
  const int64_t wcols = (q.cols + kWindowCols - 1) / kWindowCols;
  const int64_t wrows = (q.rows + kWindowRows - 1) / kWindowRows;
  s.windows = wrows * wcols;
  std::vector<uint8_t> window_hit(static_cast<size_t>(s.windows), 0);
  std::vector<uint8_t> col_hit(static_cast<size_t>(q.cols), 0),
      tile_hit(static_cast<size_t>(q.cols), 0);
  s.tiles = (q.rows + kMergedTileRows - 1) / kMergedTileRows;
  std::vector<float> sp(static_cast<size_t>(q.cols)), rs(static_cast<size_t>(q.cols));
  for (int64_t r = 0; r < q.rows; ++r) {
    dequantize_row_scaled(q.sparse_q, r, sp.data());
    dequantize_row_scaled(q.dense_q, r, rs.data());
    int64_t row_lo = 0;
    for (int64_t c = 0; c < q.cols; ++c) {
      if (merge_to_halves(sp[c], rs[c]).lo == 0) continue;
      ++row_lo;
      col_hit[c] = 1;
      tile_hit[c] = 1;
      window_hit[(r / kWindowRows) * wcols + c / kWindowCols] = 1;
    }
    s.lo_elements += row_lo;
    s.max_lo_per_row = std::max(s.max_lo_per_row, row_lo);
    if (r % kMergedTileRows == kMergedTileRows - 1 || r == q.rows - 1) {  // a tile ends
      s.lo_tile_cols += std::count(tile_hit.begin(), tile_hit.end(), 1);
      std::fill(tile_hit.begin(), tile_hit.end(), 0);
    }
  }
  s.lo_windows = std::count(window_hit.begin(), window_hit.end(), 1);
  s.lo_cols = std::count(col_hit.begin(), col_hit.end(), 1);
  return s;
}

}  // namespace sharq
