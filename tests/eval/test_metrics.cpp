// Eval metrics against hand-computed values: NLL, KL, argmax ties, percentiles, gap recovery,
// and layer statistics ordering on an outlier-heavy synthetic layer.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "sharq/eval/layer_stats.h"
#include "sharq/eval/metrics.h"
#include "sharq/synthetic.h"

namespace sharq::eval {
namespace {

TEST(Metrics, NllOfUniformLogitsIsLogV) {
  const std::vector<float> z(50, 3.0f);
  EXPECT_NEAR(token_nll(z.data(), 50, 7), std::log(50.0), 1e-12);
}

TEST(Metrics, KlHandComputed) {
  const float p[2] = {0.0f, 0.0f};                               // (1/2, 1/2)
  const float q[2] = {0.0f, static_cast<float>(std::log(3.0))};  // (1/4, 3/4)
  const double want = 0.5 * std::log(0.5 / 0.25) + 0.5 * std::log(0.5 / 0.75);
  EXPECT_NEAR(kl_divergence(p, q, 2), want, 1e-7);
  EXPECT_EQ(kl_divergence(p, p, 2), 0.0);
}

TEST(Metrics, ArgmaxPercentileGap) {
  const float z[4] = {1, 5, 5, 2};
  EXPECT_EQ(argmax(z, 4), 1);
  EXPECT_DOUBLE_EQ(percentile({1, 2, 3, 4, 5}, 0.5), 3.0);
  EXPECT_DOUBLE_EQ(percentile({0, 10}, 0.99), 9.9);
  EXPECT_DOUBLE_EQ(gap_recovery(11.0, 12.0, 10.0), 0.5);
}

TEST(Metrics, TokenStatsAccumulate) {
  TokenStats s;
  const float ref[3] = {0, 0, 0}, same[3] = {0, 0, 0}, other[3] = {0, 0, 5};
  s.add(same, ref, 3, 0);
  s.add(other, ref, 3, 0);
  EXPECT_EQ(s.tokens, 2);
  EXPECT_DOUBLE_EQ(s.top1_agreement(), 0.5);  // argmax(ref) = 0 on ties
  EXPECT_GT(s.kl_mean(), 0.0);
  EXPECT_NEAR(s.perplexity(), std::exp((std::log(3.0) + token_nll(other, 3, 0)) / 2), 1e-9);
}

TEST(LayerStats, SharqBeatsNvfp4AndBf16IsZero) {
  const int64_t t = 32, k = 256, n = 64;
  const auto x = synthetic_activation(t, k, 3);
  const auto w = synthetic_weight(n, k, 4);
  const LayerStats s = layer_stats("blk.0.test", x.data(), t, k, w.data(), n,
                                   {Mode::kBf16, Mode::kNvfp4, Mode::kSharqNvfp4}, 1);
  ASSERT_EQ(s.modes.size(), 3u);
  EXPECT_EQ(s.modes[0].act_err, 0.0);
  EXPECT_EQ(s.modes[0].out_err, 0.0);
  EXPECT_LT(s.modes[2].act_err, s.modes[1].act_err);
  EXPECT_GT(s.max_over_rms, 10.0);
  EXPECT_GT(s.energy_4of8p, 0.5);
  EXPECT_LE(s.energy_4of8p, 1.0);
  // The merged operand's low part: the shares are fractions, consistent with one another (a
  // non-zero element makes its window and its column count).
  EXPECT_GE(s.merged_lo_elements, 0.0);
  EXPECT_LT(s.merged_lo_elements, 0.05);
  EXPECT_LE(s.merged_lo_windows, 1.0);
  EXPECT_LE(s.merged_lo_cols, 1.0);
  EXPECT_LE(s.merged_lo_tile_cols, s.merged_lo_cols);  // one tile's columns are among all rows'
  EXPECT_EQ(s.merged_lo_tile_cols > 0.0, s.merged_lo_cols > 0.0);
  EXPECT_EQ(s.merged_lo_elements > 0.0, s.merged_lo_windows > 0.0);
  EXPECT_EQ(s.merged_lo_elements > 0.0, s.merged_lo_cols > 0.0);
  EXPECT_EQ(s.merged_lo_elements > 0.0, s.merged_lo_max_row > 0);
}

}  // namespace
}  // namespace sharq::eval

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "sharq/eval/report.h"

namespace sharq::eval {
namespace {

TEST(Report, GapRecoveryAndFiles) {
  EvalReport r;
  r.model = "tiny";
  r.ctx = 8;
  r.tokens = 16;
  for (auto [name, ppl] : {std::pair{"bf16", 10.0},
                           {"nvfp4", 14.0},
                           {"sharq-nvfp4", 12.0},
                           {"sharq-nvfp4+res-g32", 13.0},
                           {"dense+dense", 11.0},
                           {"fp8", 10.5}}) {
    ModeResult m;
    m.mode = name;
    m.perplexity = ppl;
    r.modes.push_back(m);
  }
  compute_gap_recovery(r);
  EXPECT_DOUBLE_EQ(r.modes[2].gap_recovery, 0.5);
  EXPECT_DOUBLE_EQ(r.modes[3].gap_recovery, 0.25);
  EXPECT_EQ(r.modes[3].baseline, "nvfp4");
  EXPECT_DOUBLE_EQ(r.modes[4].gap_recovery, 0.75);
  EXPECT_FALSE(r.modes[5].has_gap);
  const auto x = synthetic_activation(8, 64, 1);
  const auto w = synthetic_weight(16, 64, 2);
  r.layers.push_back(
      layer_stats("blk.0.q", x.data(), 8, 64, w.data(), 16, {Mode::kBf16, Mode::kNvfp4}, 1));
  const std::string dir = ::testing::TempDir() + "/sharq_report";
  write_report(r, dir);
  std::ifstream j(dir + "/report.json");
  const auto parsed = nlohmann::json::parse(j);
  EXPECT_EQ(parsed["modes"].size(), 6u);
  EXPECT_EQ(parsed["layers"][0]["layer"], "blk.0.q");
  EXPECT_TRUE(std::filesystem::exists(dir + "/report.md"));
}

}  // namespace
}  // namespace sharq::eval
