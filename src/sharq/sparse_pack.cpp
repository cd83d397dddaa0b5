// Compressed N:M code storage and its exact inverse.
#include "sharq/sparse_pack.h"

#include <string>

#include "sharq/error.h"
#include "sharq/formats.h"

namespace sharq {
namespace {

// Candidate width in elements: 1 (2:4) or 2 (4:8p); each group has 4 candidates, 2 kept.
int candidate_width(MaskPattern p) {
  if (p == MaskPattern::k2of4) return 1;
  if (p == MaskPattern::k4of8Pairs || p == MaskPattern::k4of8PairsEnergy) return 2;
  throw Error("compressed sparse storage needs a 2:4 or 4:8p pattern, got '" +
              std::string(mask_name(p)) + "'");
}

}  // namespace

CompressedSparse compress_sparse(MaskPattern p, const uint8_t* codes, const uint8_t* keep,
                                 int64_t rows, int64_t cols) {
  const int w = candidate_width(p);
  const int g = 4 * w;
  if (cols % g != 0 || cols % 4 != 0) {
    throw Error("compress_sparse: shape " + shape_str(rows, cols) + " is not a multiple of the " +
                std::string(mask_name(p)) + " group");
  }
  CompressedSparse s;
  s.pattern = p;
  s.rows = rows;
  s.cols = cols;
  s.values.assign(static_cast<size_t>(rows * cols / 4), 0);
  s.meta.assign(static_cast<size_t>((rows * (cols / g) + 1) / 2), 0);
  int64_t v = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t grp = 0; grp < cols / g; ++grp) {
      const int64_t base = r * cols + grp * g;
      int idx[2];
      int n = 0;
      for (int cand = 0; cand < 4; ++cand) {
        const int64_t e = base + cand * w;
        const bool kept = keep[e] != 0;
        for (int t = 1; t < w; ++t) {
          if ((keep[e + t] != 0) != kept) {
            throw Error("compress_sparse: row " + std::to_string(r) + ", column " +
                        std::to_string(e + t - r * cols) + " splits a 4:8p pair");
          }
        }
        if (kept) {
          if (n == 2) break;
          idx[n++] = cand;
        } else {
          for (int t = 0; t < w; ++t) {
            if (get_nibble(codes, e + t) != 0) {
              throw Error("compress_sparse: row " + std::to_string(r) + ", column " +
                          std::to_string(e + t - r * cols) +
                          " is dropped but holds a nonzero code");
            }
          }
        }
      }
      int kept_count = 0;
      for (int cand = 0; cand < 4; ++cand) kept_count += keep[base + cand * w] != 0;
      if (kept_count != 2) {
        throw Error("compress_sparse: row " + std::to_string(r) + ", group at column " +
                    std::to_string(grp * g) + " keeps " + std::to_string(kept_count) +
                    " candidates, the pattern " + std::string(mask_name(p)) + " keeps 2");
      }
      const int64_t gi = r * (cols / g) + grp;
      put_nibble(s.meta.data(), gi, static_cast<uint8_t>(idx[0] | (idx[1] << 2)));
      for (int k = 0; k < 2; ++k) {
        for (int t = 0; t < w; ++t)
          put_nibble(s.values.data(), v++, get_nibble(codes, base + idx[k] * w + t));
      }
    }
  }
  return s;
}

std::vector<uint8_t> decompress_sparse(const CompressedSparse& s) {
  const int w = candidate_width(s.pattern);
  const int g = 4 * w;
  std::vector<uint8_t> codes(static_cast<size_t>(s.rows * s.cols / 2), 0);
  int64_t v = 0;
  for (int64_t r = 0; r < s.rows; ++r) {
    for (int64_t grp = 0; grp < s.cols / g; ++grp) {
      const uint8_t m = get_nibble(s.meta.data(), r * (s.cols / g) + grp);
      const int idx[2] = {m & 0x3, (m >> 2) & 0x3};
      const int64_t base = r * s.cols + grp * g;
      for (int k = 0; k < 2; ++k) {
        for (int t = 0; t < w; ++t)
          put_nibble(codes.data(), base + idx[k] * w + t, get_nibble(s.values.data(), v++));
      }
    }
  }
  return codes;
}

std::vector<uint8_t> sparse_keep_map(const CompressedSparse& s) {
  const int w = candidate_width(s.pattern);
  const int g = 4 * w;
  std::vector<uint8_t> keep(static_cast<size_t>(s.rows * s.cols), 0);
  for (int64_t r = 0; r < s.rows; ++r) {
    for (int64_t grp = 0; grp < s.cols / g; ++grp) {
      const uint8_t m = get_nibble(s.meta.data(), r * (s.cols / g) + grp);
      for (int idx : {m & 0x3, (m >> 2) & 0x3}) {
        for (int t = 0; t < w; ++t)
          keep[static_cast<size_t>(r * s.cols + grp * g + idx * w + t)] = 1;
      }
    }
  }
  return keep;
}

}  // namespace sharq
