// Deterministic synthetic activations and weights (std::mt19937_64, fixed seeds).
#include "sharq/synthetic.h"

#include <random>

namespace sharq {

std::vector<float> synthetic_activation(int64_t rows, int64_t cols, uint64_t seed,
                                        int outlier_channels, float outlier_scale) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<float> channel_gain(static_cast<size_t>(cols), 1.0f);
  for (int i = 0; i < outlier_channels && cols > 0; ++i) {
    const auto c = static_cast<size_t>(rng() % static_cast<uint64_t>(cols));
    channel_gain[c] = 10.0f + (outlier_scale - 10.0f) * uniform(rng);
  }
  std::vector<float> x(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float token_gain = uniform(rng) < 0.02f ? 4.0f : 1.0f;
    for (int64_t c = 0; c < cols; ++c) {
      x[static_cast<size_t>(r * cols + c)] =
          normal(rng) * channel_gain[static_cast<size_t>(c)] * token_gain;
    }
  }
  return x;
}

std::vector<float> synthetic_weight(int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (auto& v : w) v = normal(rng);
  return w;
}

}  // namespace sharq
