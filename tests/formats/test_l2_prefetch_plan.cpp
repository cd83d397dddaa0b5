// The L2 prefetch plan (include/sharq/cuda/l2_prefetch_plan.h): which bytes of a tiled FP4
// weight a prefetch fetches. Checked against the layout's own element addressing: the fetched
// bytes are exactly the codes (and the scales) of the first `windows` windows of every strip,
// and every range satisfies cp.async.bulk.prefetch's rules (16-byte aligned, a multiple of 16
// bytes, inside the buffer).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "sharq/cuda/l2_prefetch_plan.h"
#include "sharq/cuda/weight_layout.h"

namespace sharq::cuda::l2_prefetch {
namespace {

struct Shape {
  int64_t n, k;
};
// Full strips, a short last strip (n % 16), a 64-wide last window (k % 128 == 64), long strips
// (several chunks each), one row.
const Shape kShapes[] = {{1, 64},    {16, 128},  {17, 192},  {40, 576},
                         {33, 1088}, {64, 4096}, {20, 4160}, {48, 2112}};

// Marks the bytes of every range of the plan; checks the prefetch rules on each.
void mark(const PartPlan& p, std::vector<int>& codes, std::vector<int>& scales) {
  for (int64_t s = 0; s < p.strips(); ++s) {
    for (int64_t c = 0; c < p.chunks_per_strip; ++c) {
      const Range r = p.code_chunk(s, c);
      if (r.bytes == 0) continue;
      ASSERT_EQ(r.offset % 16, 0);
      ASSERT_EQ(r.bytes % 16, 0);
      ASSERT_LE(r.bytes, kChunk);
      ASSERT_GE(r.offset, 0);
      ASSERT_LE(r.offset + r.bytes, static_cast<int64_t>(codes.size()));
      for (int64_t b = r.offset; b < r.offset + r.bytes; ++b) ++codes[static_cast<size_t>(b)];
    }
    const Range r = p.scale_range(s);
    if (r.bytes == 0) continue;
    ASSERT_EQ(r.offset % 16, 0);
    ASSERT_EQ(r.bytes % 16, 0);
    ASSERT_GE(r.offset, 0);
    ASSERT_LE(r.offset + r.bytes, static_cast<int64_t>(scales.size()));
    for (int64_t b = r.offset; b < r.offset + r.bytes; ++b) ++scales[static_cast<size_t>(b)];
  }
}

TEST(L2PrefetchPlan, FetchesExactlyTheLeadingWindowsOfEveryStrip) {
  for (const auto& [n, k] : kShapes) {
    for (int g : {16, 32}) {
      const int64_t total = part_bytes(n, k, g), nwin = (k + 127) / 128;
      for (int64_t budget : {int64_t{1}, total / 3, total / 2, total - 1, total, 4 * total}) {
        const PartPlan p = plan_part(n, k, g, total, budget);
        SCOPED_TRACE(testing::Message() << n << "x" << k << " g" << g << " budget " << budget
                                        << " windows " << p.windows);
        ASSERT_LE(p.windows, nwin);
        if (budget >= total) {
          ASSERT_EQ(p.windows, nwin);
        }
        std::vector<int> codes(static_cast<size_t>(n * k / 2), 0);
        std::vector<int> scales(static_cast<size_t>(n * k / g), 0);
        mark(p, codes, scales);
        // Codes: each byte once if its element lies in a fetched window, else not at all.
        for (int64_t r = 0; r < n; ++r) {
          for (int64_t kk = 0; kk < k; kk += 2) {
            const int64_t o = weight_layout::code_offset(r, kk, n, k);
            ASSERT_EQ(codes[static_cast<size_t>(o)], kk < p.windows * 128 ? 1 : 0)
                << "row " << r << " k " << kk;
          }
        }
        // Scales: every fetched window's scales, except at most the buffer's last < 16 bytes.
        const int64_t cap = n * k / g / 16 * 16;
        int64_t fetched = 0;
        for (int64_t r = 0; r < n; ++r) {
          for (int64_t kk = 0; kk < std::min(k, p.windows * 128); kk += g) {
            const int64_t o = weight_layout::scale_offset(r, kk, n, k, g);
            if (o < cap) {
              ASSERT_GE(scales[static_cast<size_t>(o)], 1) << "row " << r << " k " << kk;
            }
          }
        }
        for (int v : scales) fetched += v;
        for (int v : codes) fetched += v;
        // The budget holds up to one window (the last may be half as wide as the others) and each
        // strip's 16-byte scale tail.
        if (budget < total) {
          ASSERT_LE(fetched, budget + n * (64 + 128 / g) + 16 * p.strips());
        }
      }
    }
  }
}

TEST(L2PrefetchPlan, NoBudgetFetchesNothing) {
  const PartPlan p = plan_part(4096, 4096, 32, part_bytes(4096, 4096, 32), 0);
  EXPECT_EQ(p.windows, 0);
  EXPECT_EQ(p.chunks(), 0);
}

TEST(L2PrefetchPlan, LlamaShapesFitTheGrid) {
  // gate + up of Llama-3.1-8B under 24 MiB: the same fraction of each, chunk count in range.
  const int64_t n = 14336, k = 4096, total = 2 * part_bytes(n, k, 32), budget = 24 << 20;
  const PartPlan p = plan_part(n, k, 32, total, budget);
  EXPECT_EQ(p.windows, 32 * budget / total);
  EXPECT_GT(p.windows, 0);
  EXPECT_LT(p.windows, 32);
  EXPECT_EQ(p.chunks_per_strip, (16 * p.windows * 64 + kChunk - 1) / kChunk);
}

}  // namespace
}  // namespace sharq::cuda::l2_prefetch
