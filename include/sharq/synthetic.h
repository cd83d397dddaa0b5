// Deterministic LLM-like test data: Gaussian activations with a few heavy outlier channels
// (as seen in real decoder-layer inputs), and Gaussian weights. For demos, benches and tests;
// not a substitute for real model activations (the eval tool uses those).
#pragma once

#include <cstdint>
#include <vector>

namespace sharq {

// (rows x cols) activation: N(0, 1) entries; `outlier_channels` columns (spread over K) scaled
// by factors between 10 and `outlier_scale`; a few rows get a per-token gain.
std::vector<float> synthetic_activation(int64_t rows, int64_t cols, uint64_t seed,
                                        int outlier_channels = 8, float outlier_scale = 60.0f);
// (rows x cols) weight: N(0, 0.02^2) entries.
std::vector<float> synthetic_weight(int64_t rows, int64_t cols, uint64_t seed);

}  // namespace sharq
