// How the split-key decode attention (src/cuda/attention.cu) divides a context into key ranges.
// Plain C++ so the rule has CPU tests (tests/formats/test_attn_split_rule.cpp); the kernel file
// feeds it the device's SM count.
//
// One block per (query row, kv head, chunk of its query heads, key range). The rule: the fewest
// ranges whose grid fills the GPU's `slots` (blocks resident at once), each range a multiple of
// kSplitKeys; but a grid that would run past 1.25 waves takes the most ranges that fit in one
// instead. Measured on an H200 (bench_attention, session 23, docs/RESULTS.md): batch 32's 3
// ranges (768 blocks over 528 slots, 1.45 waves) took 90.2 us a layer, 2 ranges (one wave) 75.3;
// batch 8's 9 ranges (1.09 waves) 25.8 us, 7 ranges (0.85 waves) 26.8.
#pragma once

#include <algorithm>
#include <cstdint>

namespace sharq::cuda::attn_split {

inline constexpr int64_t kSplitKeys = 32;    // ranges are multiples of this
inline constexpr int64_t kMaxSplits = 1024;  // the combine kernel's shared weights
inline constexpr int64_t kMaxWavesNum = 5;   // 1.25 waves = kMaxWavesNum / kMaxWavesDen
inline constexpr int64_t kMaxWavesDen = 4;

struct Split {
  int64_t splits;        // key ranges (those past the position are empty)
  int64_t per_split;     // keys a range
  int64_t splits_bound;  // >= splits, never smaller for a larger ctx (sizes the workspace)
};

// groups: blocks a range (rows x kv heads x chunks); ctx: keys to cover (the cache capacity);
// slots: decode blocks resident on the device at once; granule: ranges are multiples of it (a
// multiple of kSplitKeys: the FP16-cache kernel's four warps take 16-key tiles, so 64).
inline Split choose(int64_t groups, int64_t ctx, int64_t slots, int64_t granule = kSplitKeys) {
  const int64_t fill = (slots + groups - 1) / groups;
  const int64_t want = groups * fill * kMaxWavesDen > slots * kMaxWavesNum ? slots / groups : fill;
  const int64_t max_splits = std::clamp<int64_t>((ctx + granule - 1) / granule, 1, kMaxSplits);
  Split s{};
  s.splits_bound = std::clamp<int64_t>(want, 1, max_splits);
  s.per_split = (ctx + s.splits_bound - 1) / s.splits_bound;
  s.per_split = (s.per_split + granule - 1) / granule * granule;
  s.splits = (ctx + s.per_split - 1) / s.per_split;
  return s;
}

}  // namespace sharq::cuda::attn_split
