// The mode table of SPEC section 5.
#include "sharq/modes.h"

#include "sharq/error.h"

namespace sharq {
namespace {

using F = Format;
using P = MaskPattern;
using A = ActRule;

// mode, name, act rule, act fmt, mask, sparse fmt, dense fmt, residual mask, residual used,
// weight bf16, weight fmt
const ModeTraits kModes[] = {
    {Mode::kBf16, "bf16", A::kBf16Round, F::kNvfp4G16, P::kNone, F::kNvfp4G16, F::kNvfp4G16,
     P::kNone, false, true, F::kNvfp4G16},
    {Mode::kFp8, "fp8", A::kSingle, F::kFp8, P::kNone, F::kFp8, F::kFp8, P::kNone, false, false,
     F::kFp8},
    {Mode::kNvfp4W4A16, "nvfp4-w4a16", A::kIdentity, F::kNvfp4G16, P::kNone, F::kNvfp4G16,
     F::kNvfp4G16, P::kNone, false, false, F::kNvfp4G16},
    {Mode::kNvfp4, "nvfp4", A::kSingle, F::kNvfp4G16, P::kNone, F::kNvfp4G16, F::kNvfp4G16,
     P::kNone, false, false, F::kNvfp4G16},
    {Mode::kMxfp4, "mxfp4", A::kSingle, F::kMxfp4, P::kNone, F::kMxfp4, F::kMxfp4, P::kNone, false,
     false, F::kMxfp4},
    {Mode::kHif4, "hif4", A::kSingle, F::kHif4, P::kNone, F::kHif4, F::kHif4, P::kNone, false,
     false, F::kHif4},
    {Mode::kSharqNvfp4, "sharq-nvfp4", A::kDecompose, F::kNvfp4G16, P::k4of8Pairs, F::kNvfp4G32,
     F::kNvfp4G16, P::kNone, true, false, F::kNvfp4G32},
    {Mode::kSharqNvfp4_24, "sharq-nvfp4-24", A::kDecompose, F::kNvfp4G16, P::k2of4, F::kNvfp4G32,
     F::kNvfp4G16, P::kNone, true, false, F::kNvfp4G32},
    {Mode::kSharqMxfp4, "sharq-mxfp4", A::kDecompose, F::kMxfp4, P::k2of4, F::kMxfp4, F::kMxfp4,
     P::kNone, true, false, F::kMxfp4},
    {Mode::kSharqHif4, "sharq-hif4", A::kDecompose, F::kHif4, P::k2of4, F::kHif4, F::kHif4,
     P::kNone, true, false, F::kHif4},
    {Mode::kSparseOnly, "sparse-only", A::kDecompose, F::kNvfp4G16, P::k4of8Pairs, F::kNvfp4G32,
     F::kNvfp4G16, P::kNone, false, false, F::kNvfp4G32},
    {Mode::kDenseDense, "dense+dense", A::kDecompose, F::kNvfp4G16, P::kNone, F::kNvfp4G16,
     F::kNvfp4G16, P::kNone, true, false, F::kNvfp4G32},
    {Mode::kSparseSparse, "sparse+sparse", A::kDecompose, F::kNvfp4G16, P::k4of8Pairs, F::kNvfp4G32,
     F::kNvfp4G32, P::k4of8Pairs, true, false, F::kNvfp4G32},
    // Beyond the paper (docs/variants.md): sharq-nvfp4 with a per-token tensor scale.
    {Mode::kSharqNvfp4PerToken, "sharq-nvfp4-pt", A::kDecompose, F::kNvfp4G16, P::k4of8Pairs,
     F::kNvfp4G32, F::kNvfp4G16, P::kNone, true, false, F::kNvfp4G32, true},
};

}  // namespace

const ModeTraits& mode_traits(Mode m) {
  for (const auto& t : kModes) {
    if (t.mode == m) return t;
  }
  throw Error("unknown mode id " + std::to_string(static_cast<int>(m)));
}

std::string_view mode_name(Mode m) {
  return mode_traits(m).name;
}

const std::vector<Mode>& all_modes() {
  static const std::vector<Mode> modes = [] {
    std::vector<Mode> v;
    for (const auto& t : kModes) v.push_back(t.mode);
    return v;
  }();
  return modes;
}

Mode mode_from_name(std::string_view name) {
  std::string known;
  for (const auto& t : kModes) {
    if (name == t.name) return t.mode;
    known += std::string(known.empty() ? "" : ", ") + t.name;
  }
  throw Error("unknown mode '" + std::string(name) + "' (known: " + known + ")");
}

std::vector<Mode> parse_mode_list(std::string_view list) {
  if (list == "all") return all_modes();
  std::vector<Mode> out;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = list.find(',', start);
    const std::string_view item = list.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (item.empty()) throw Error("empty mode name in list '" + std::string(list) + "'");
    out.push_back(mode_from_name(item));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace sharq
