// N:M activation masks of SPEC section 4, computed on the scaled activation x'.
// Not the packed sparse storage (sparse_pack.h).
#pragma once

#include <cstdint>
#include <string_view>

namespace sharq {

enum class MaskPattern : uint8_t {
  kNone,             // keep everything
  k4of8Pairs,        // "4:8p": per 8, keep the 2 of 4 pairs with the highest max|.|
  k2of4,             // "2:4": per 4, keep the 2 largest |.|
  k4of8PairsEnergy,  // experiment: 4:8p with pair score x0^2 + x1^2 (docs/variants.md)
};

std::string_view mask_name(MaskPattern p);
// Elements per mask group (8 for 4:8p, 4 for 2:4, 1 for none).
int mask_group(MaskPattern p);

// Writes keep[i] = 1 where element i of the row is kept, 0 where dropped. k % group == 0.
// Ties: the lower pair (4:8p) or element (2:4) index wins.
void mask_row(MaskPattern p, const float* xs, int64_t k, uint8_t* keep);

// Writes out[i] = xs[i] where kept and exactly +0 where dropped (the backbone X_sp row), and,
// if keep is not null, the keep flags. Same decisions as mask_row.
void apply_mask_row(MaskPattern p, const float* xs, int64_t k, float* out, uint8_t* keep);

}  // namespace sharq
