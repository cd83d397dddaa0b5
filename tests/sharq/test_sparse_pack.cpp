// Compressed N:M storage: exact round trip to the dense code layout for real backbones, the
// metadata nibble convention, and rejection of maps that are not of the pattern.
#include <gtest/gtest.h>

#include <vector>

#include "sharq/decompose.h"
#include "sharq/error.h"
#include "sharq/formats.h"
#include "sharq/sparse_pack.h"
#include "sharq/synthetic.h"

namespace sharq {
namespace {

TEST(SparsePack, RoundTripsRealBackbones) {
  const int64_t rows = 16, cols = 512;
  const auto x = synthetic_activation(rows, cols, 9);
  for (auto [mode, pattern] : {std::pair{Mode::kSharqNvfp4, MaskPattern::k4of8Pairs},
                               std::pair{Mode::kSharqNvfp4_24, MaskPattern::k2of4},
                               std::pair{Mode::kSharqHif4, MaskPattern::k2of4}}) {
    const ActivationQuant q = quantize_activation(mode, x.data(), rows, cols, "x");
    const CompressedSparse s =
        compress_sparse(pattern, q.sparse_q.codes.data(), q.keep.data(), rows, cols);
    EXPECT_EQ(s.values.size(),
              static_cast<size_t>(rows * cols / 4));  // K/2 codes per row, 2 per byte
    EXPECT_EQ(decompress_sparse(s), q.sparse_q.codes);
    EXPECT_EQ(sparse_keep_map(s), q.keep);
  }
}

TEST(SparsePack, MetadataNibbles) {
  // One row of 8 codes, 2:4: group 0 keeps elements 1 and 3, group 1 keeps 0 and 2.
  std::vector<uint8_t> codes(4, 0), keep = {0, 1, 0, 1, 1, 0, 1, 0};
  put_nibble(codes.data(), 1, 0x3);
  put_nibble(codes.data(), 3, 0xA);
  put_nibble(codes.data(), 4, 0x7);
  put_nibble(codes.data(), 6, 0x1);
  const CompressedSparse s = compress_sparse(MaskPattern::k2of4, codes.data(), keep.data(), 1, 8);
  EXPECT_EQ(s.meta[0], (0x1 | (0x3 << 2)) | ((0x0 | (0x2 << 2)) << 4));
  EXPECT_EQ(get_nibble(s.values.data(), 0), 0x3);
  EXPECT_EQ(get_nibble(s.values.data(), 1), 0xA);
  EXPECT_EQ(get_nibble(s.values.data(), 2), 0x7);
  EXPECT_EQ(get_nibble(s.values.data(), 3), 0x1);
}

TEST(SparsePack, RejectsMapsNotOfThePattern) {
  std::vector<uint8_t> codes(4, 0);
  const std::vector<uint8_t> three = {1, 1, 1, 0, 1, 1, 0, 0};
  EXPECT_THROW(compress_sparse(MaskPattern::k2of4, codes.data(), three.data(), 1, 8), Error);
  const std::vector<uint8_t> split_pair = {1, 0, 1, 1, 1, 0, 0, 0};
  EXPECT_THROW(compress_sparse(MaskPattern::k4of8Pairs, codes.data(), split_pair.data(), 1, 8),
               Error);
  std::vector<uint8_t> dirty(4, 0);
  put_nibble(dirty.data(), 2, 0x5);  // dropped position with a nonzero code
  const std::vector<uint8_t> keep = {1, 1, 0, 0, 1, 1, 0, 0};
  EXPECT_THROW(compress_sparse(MaskPattern::k2of4, dirty.data(), keep.data(), 1, 8), Error);
  EXPECT_THROW(compress_sparse(MaskPattern::kNone, codes.data(), keep.data(), 1, 8), Error);
}

}  // namespace
}  // namespace sharq
