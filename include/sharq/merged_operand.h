// The SharQ activation as one GEMM operand plus a sparse correction (docs/merged_operand.md).
//
// SPEC 5 gives both paths the same tensor scale s_t and SPEC 6 both the same dequantized weight
// W~, so Y = s_t s_w (X~_sp + R~) W~^T: the two products of SPEC 7 are one product of the merged
// activation A = X~_sp + R~ (scaled domain). A is exact in float32 (each term has at most 6
// significant bits inside [2^-10, 2688], so the sum spans at most 23 bits) but not always in
// FP16, the tensor cores' input on Hopper: where the backbone holds an outlier and the residual a
// much smaller value, A needs more than FP16's 11 bits. So A = hi + lo with hi = A rounded to FP16
// (RNE) and lo = A - hi, which is itself exact in FP16. lo is non-zero only there, which on LLM
// activations is a small fraction of the elements (docs/merged_operand.md): one dense FP16 GEMM on
// hi plus a sparse one on lo gives SPEC 7's product without two dense products.
#pragma once

#include <cstdint>

#include "sharq/decompose.h"

namespace sharq {

// The FP16 bit patterns of hi and lo for one element.
struct MergedHalves {
  uint16_t hi = 0;
  uint16_t lo = 0;
};

// sp, rs: one element's scaled-domain decodes of the backbone and of the residual (SPEC 5
// steps 3 and 5), e.g. from dequantize_row_scaled. Throws sharq::Error when
// hi + lo would not equal sp + rs exactly (inputs outside the SPEC 5 decode set).
MergedHalves merge_to_halves(float sp, float rs);

// How sparse lo is for one decomposed activation, at the granularities the GPU kernels would
// skip it: single elements, decode windows (8 token rows x 128 K, the batched decode GEMM's
// step), whole columns (a K index with lo != 0 in any row: what the merged prefill GEMM appends,
// gemm_prefill_merged_f32), and columns per tile of kMergedTileRows token rows (what a prefill
// that compacted lo per token tile would append, each tile with its own columns).
constexpr int64_t kMergedTileRows = 128;
struct MergedLoStats {
  int64_t rows = 0, cols = 0;
  int64_t lo_elements = 0;
  int64_t windows = 0, lo_windows = 0;
  int64_t lo_cols = 0;
  int64_t tiles = 0, lo_tile_cols = 0;  // row tiles; sum over them of their columns with lo
  int64_t max_lo_per_row = 0;
};

// q: a decomposition mode's quantize_activation output (sparse_q and dense_q present). Throws
// sharq::Error for a mode without a backbone.
MergedLoStats merged_lo_stats(const ActivationQuant& q);

}  // namespace sharq
