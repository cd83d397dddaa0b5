// The project's mode names (SPEC section 5, DESIGN.md "Modes"): what each linear layer does to
// its activation and its weight. One table; everything mode-specific reads it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sharq/formats.h"
#include "sharq/masks.h"

namespace sharq {

enum class Mode : uint8_t {
  kBf16,
  kFp8,
  kNvfp4W4A16,
  kNvfp4,
  kMxfp4,
  kHif4,
  kSharqNvfp4,
  kSharqNvfp4_24,
  kSharqMxfp4,
  kSharqHif4,
  kSparseOnly,
  kDenseDense,
  kSparseSparse,
  kSharqNvfp4PerToken,
};

enum class ActRule : uint8_t {
  kBf16Round,  // round to bfloat16 (the reference dtype)
  kIdentity,   // not quantized (W4A16)
  kSingle,     // one format on the whole activation (baselines)
  kDecompose,  // SharQ two-path decomposition (SPEC 5) and its ablations
};

struct ModeTraits {
  Mode mode;
  const char* name;
  ActRule act;
  Format act_format;             // kSingle: the activation's format
  MaskPattern mask;              // kDecompose: backbone mask (kNone for dense+dense)
  Format sparse_format;          // kDecompose: first (backbone) path format
  Format dense_format;           // kDecompose: residual path format
  MaskPattern residual_mask;     // kDecompose: mask applied to R (sparse+sparse), else kNone
  bool residual_used;            // false for sparse-only
  bool weight_bf16;              // weights rounded to bf16 instead of quantized
  Format weight_format;          // otherwise: the weight format (SPEC 6)
  bool per_token_scale = false;  // NVFP4 tensor scale per row (token) instead of per tensor
};

const ModeTraits& mode_traits(Mode m);
// Throws sharq::Error listing the known modes for an unknown name.
Mode mode_from_name(std::string_view name);
std::string_view mode_name(Mode m);
const std::vector<Mode>& all_modes();
// Parses "all" or a comma-separated list of mode names.
std::vector<Mode> parse_mode_list(std::string_view list);
inline bool is_decomposition(Mode m) {
  return mode_traits(m).act == ActRule::kDecompose;
}

}  // namespace sharq
