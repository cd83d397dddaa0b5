// Which bytes of a packed FP4 weight (weight_layout.h) an L2 prefetch fetches ahead of its decode
// GEMM. At batch 1 the decode step alternates memory-bound products with chains of small
// latency-bound kernels (norms, prepares, RoPE, attention) during which HBM is mostly idle; the
// next product's weights can be moved into L2 then. L2 (50 MB on an H100) holds only part of a
// large product, so the prefetch takes the same leading fraction of every 16-row strip: the
// decode GEMM's blocks each walk one strip from K = 0 up, so every block then starts on bytes
// already in L2, and no block is left with more HBM bytes than the others.
//
// A part's plan: `windows` leading 128-K windows of each strip (all of them when the budget
// allows). Code bytes of strip s, prefix of that many windows, are cut into chunks of at most
// kChunk bytes (one prefetch instruction each); the strip's scales are one more range. Every
// range is 16-byte aligned, a multiple of 16 bytes long and inside the part's buffers (what
// cp.async.bulk.prefetch.L2 requires); tests/formats/test_l2_prefetch_plan.cpp checks it.
#pragma once

#include <cstdint>

#include "sharq/cuda/weight_layout.h"

namespace sharq::cuda::l2_prefetch {

constexpr int64_t kChunk = 8192;  // bytes per prefetch instruction (one thread each)

struct Range {
  int64_t offset;  // into the part's codes or scales
  int64_t bytes;   // 0: nothing to fetch
};

struct PartPlan {
  int64_t n = 0, k = 0;
  int group = 32;
  int64_t windows = 0;           // leading windows of each strip fetched
  int64_t chunks_per_strip = 0;  // code chunks of a full (16-row) strip's prefix

  SHARQ_HD int64_t strips() const { return (n + 15) / 16; }
  SHARQ_HD int64_t chunks() const { return strips() * chunks_per_strip; }
  // Code bytes of strip s's prefix: its rows times the prefix's K, two codes a byte.
  SHARQ_HD int64_t prefix_bytes(int64_t s) const {
    const int64_t kk = windows * 128 < k ? windows * 128 : k;
    return weight_layout::rows_in_tile(16 * s, n) * kk / 2;
  }
  // Chunk c of strip s's code prefix.
  SHARQ_HD Range code_chunk(int64_t s, int64_t c) const {
    const int64_t left = prefix_bytes(s) - c * kChunk;
    return {s * 8 * k + c * kChunk, left <= 0 ? 0 : left < kChunk ? left : kChunk};
  }
  // Strip s's scales for its prefix (codes * 2 / group, weight_layout.h), rounded up to 16 bytes
  // (the excess is the next strip's, still inside the buffer) and cut at the buffer's last whole
  // 16 bytes.
  SHARQ_HD Range scale_range(int64_t s) const {
    const int64_t start = s * 8 * k * 2 / group;
    const int64_t want = (prefix_bytes(s) * 2 / group + 15) / 16 * 16;
    const int64_t end_cap = n * k / group / 16 * 16;
    const int64_t end = start + want < end_cap ? start + want : end_cap;
    return {start, end > start ? end - start : 0};
  }
};

// Bytes a whole part occupies (codes + scales).
inline int64_t part_bytes(int64_t n, int64_t k, int group) {
  return n * k / 2 + n * k / group;
}

// The plan of one part of a product whose parts total `total` bytes, under `budget` bytes for
// the whole product: the same leading fraction of every strip of every part.
inline PartPlan plan_part(int64_t n, int64_t k, int group, int64_t total, int64_t budget) {
  PartPlan p;
  p.n = n;
  p.k = k;
  p.group = group;
  const int64_t nwin = (k + 127) / 128;
  if (budget <= 0 || total <= 0 || n <= 0) return p;
  p.windows = budget >= total ? nwin : nwin * budget / total;
  const int64_t full = 16 * (p.windows * 128 < k ? p.windows * 128 : k) / 2;
  p.chunks_per_strip = (full + kChunk - 1) / kChunk;
  return p;
}

}  // namespace sharq::cuda::l2_prefetch
