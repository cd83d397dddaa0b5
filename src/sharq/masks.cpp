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
    case MaskPattern::k4of8PairsEnergy:
      return "4:8p-energy";
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
    case MaskPattern::k4of8PairsEnergy:
      return 8;
  }
  return 1;
}

namespace {

// Returns a 4-bit set of the two kept candidates among scores s[0..3]. cIJ (I < J) says
// candidate I beats J (ties go to the lower index); a candidate beaten by two or more is dropped.
inline unsigned keep_two_of_four(const float s[4]) {
  const int c01 = s[0] >= s[1], c02 = s[0] >= s[2], c03 = s[0] >= s[3];
  const int c12 = s[1] >= s[2], c13 = s[1] >= s[3], c23 = s[2] >= s[3];
  const int beaten0 = 3 - c01 - c02 - c03;
  const int beaten1 = c01 + 2 - c12 - c13;
  const int beaten2 = c02 + c12 + 1 - c23;
  const int beaten3 = c03 + c13 + c23;
  return static_cast<unsigned>((beaten0 < 2) | ((beaten1 < 2) << 1) | ((beaten2 < 2) << 2) |
                               ((beaten3 < 2) << 3));
}

// Returns a bit per element of the group starting at xs (8 bits for 4:8p, 4 for 2:4).
inline unsigned group_keep_bits(MaskPattern p, const float* xs) {
  if (p == MaskPattern::k2of4) {
    const float s[4] = {std::fabs(xs[0]), std::fabs(xs[1]), std::fabs(xs[2]), std::fabs(xs[3])};
    return keep_two_of_four(s);
  }
  float s[4];
  for (int q = 0; q < 4; ++q) {
    const float a = xs[2 * q], b = xs[2 * q + 1];
    s[q] =
        p == MaskPattern::k4of8PairsEnergy ? a * a + b * b : std::max(std::fabs(a), std::fabs(b));
  }
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
