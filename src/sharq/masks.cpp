// SPEC 4 masks. A candidate (pair or element) is kept iff fewer than two candidates of its group
// beat it, where q beats p when score_q > score_p, or score_q == score_p and q < p.
#include "sharq/masks.h"

#include <algorithm>
#include <cmath>

namespace sharq {

std::string_view mask_name(MaskPattern p) {
  switch (p) {
    case MaskPattern::kNone:
      return "none";
    case MaskPattern::k4of8Pairs:
      return "4:8p";
    case MaskPattern::k2of4:
      return "2:4";
  }
  return "?";
}

int mask_group(MaskPattern p) {
  switch (p) {
    case MaskPattern::kNone:
      return 1;
    case MaskPattern::k4of8Pairs:
      return 8;
    case MaskPattern::k2of4:
      return 4;
  }
  return 1;
}

namespace {

// Returns a 4-bit set of the two kept candidates among scores s[0..3].
inline unsigned keep_two_of_four(const float s[4]) {
  unsigned kept = 0;
  for (int p = 0; p < 4; ++p) {
    int beaten_by = 0;
    for (int q = 0; q < 4; ++q) {
      beaten_by += (s[q] > s[p]) || (s[q] == s[p] && q < p);
    }
    kept |= (beaten_by < 2 ? 1u : 0u) << p;
  }
  return kept;
}

// Returns a bit per element of the group starting at xs (8 bits for 4:8p, 4 for 2:4).
inline unsigned group_keep_bits(MaskPattern p, const float* xs) {
  if (p == MaskPattern::k2of4) {
    const float s[4] = {std::fabs(xs[0]), std::fabs(xs[1]), std::fabs(xs[2]), std::fabs(xs[3])};
    return keep_two_of_four(s);
  }
  const float s[4] = {
      std::max(std::fabs(xs[0]), std::fabs(xs[1])), std::max(std::fabs(xs[2]), std::fabs(xs[3])),
      std::max(std::fabs(xs[4]), std::fabs(xs[5])), std::max(std::fabs(xs[6]), std::fabs(xs[7]))};
  const unsigned pairs = keep_two_of_four(s);
  unsigned bits = 0;
  for (int q = 0; q < 4; ++q) {
    if (pairs & (1u << q)) bits |= 3u << (2 * q);
  }
  return bits;
}

}  // namespace

void apply_mask_row(MaskPattern p, const float* xs, int64_t k, float* out, uint8_t* keep) {
  if (p == MaskPattern::kNone) {
    for (int64_t i = 0; i < k; ++i) {
      out[i] = xs[i];
      if (keep) keep[i] = 1;
    }
    return;
  }
  const int g = mask_group(p);
  for (int64_t o = 0; o < k; o += g) {
    const unsigned bits = group_keep_bits(p, xs + o);
    for (int i = 0; i < g; ++i) {
      const bool kept = (bits >> i) & 1u;
      out[o + i] = kept ? xs[o + i] : 0.0f;
      if (keep) keep[o + i] = kept ? 1 : 0;
    }
  }
}

void mask_row(MaskPattern p, const float* xs, int64_t k, uint8_t* keep) {
  if (p == MaskPattern::kNone) {
    std::fill(keep, keep + k, uint8_t{1});
    return;
  }
  const int g = mask_group(p);
  for (int64_t o = 0; o < k; o += g) {
    const unsigned bits = group_keep_bits(p, xs + o);
    for (int i = 0; i < g; ++i) keep[o + i] = (bits >> i) & 1u;
  }
}

}  // namespace sharq
