// Packed compressed N:M storage for FP4 codes: kept codes (K/2 per row) + metadata, with an
// exact round trip to the dense code layout. Not the mask decision itself (masks.h).
#pragma once

#include <cstdint>
#include <vector>

#include "sharq/masks.h"

namespace sharq {

// (rows x cols) FP4 codes under a 2:4 or 4:8p mask, compressed:
//   values : rows * cols/2 kept codes, two per byte (kept element 2i in the low nibble), in
//            increasing column order within the row.
//   meta   : one nibble per mask group, two per byte (group 2i in the low nibble). The low
//            2 bits index the first kept candidate, the high 2 bits the second (first < second);
//            candidates are elements (2:4) or pairs (4:8p). This is the nibble convention of
//            Hopper's sparse wgmma metadata for 2:4.
struct CompressedSparse {
  MaskPattern pattern = MaskPattern::k2of4;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<uint8_t> values;
  std::vector<uint8_t> meta;
};

// codes: dense packed FP4 codes (rows*cols/2 bytes); keep: 1 per element, exactly the pattern's
// count per group (2 of 4, or 2 whole pairs of 8). Throws sharq::Error on a keep map that is not
// of the pattern, or on a dropped position whose code is not +0.
CompressedSparse compress_sparse(MaskPattern p, const uint8_t* codes, const uint8_t* keep,
                                 int64_t rows, int64_t cols);
// Back to dense packed codes (dropped positions = code 0).
std::vector<uint8_t> decompress_sparse(const CompressedSparse& s);
// Back to the keep map (1 per kept element).
std::vector<uint8_t> sparse_keep_map(const CompressedSparse& s);

}  // namespace sharq
