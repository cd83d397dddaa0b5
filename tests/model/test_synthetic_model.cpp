// Synthetic benchmark models: the real config's shapes, deterministic weights whatever the
// thread count, clear errors for unknown presets.
#include <gtest/gtest.h>

#include <cmath>

#include "sharq/error.h"
#include "sharq/model/synthetic_model.h"

namespace sharq::model {
namespace {

TEST(SyntheticModel, Llama31ConfigIsTheRealOne) {
  const ModelConfig c = synthetic_config("llama-3.1-8b");
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.rope_theta, 500000.0f);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_FALSE(c.tie_word_embeddings);
}

TEST(SyntheticModel, DeterministicAcrossThreadsWithEveryTensor) {
  const LoadedModel a = synthetic_model("llama-tiny", 7, 1),
                    b = synthetic_model("llama-tiny", 7, 2);
  const LoadedModel other = synthetic_model("llama-tiny", 8, 1);
  const ModelConfig& c = a.config;
  // embed, norm, lm_head + 9 per layer.
  EXPECT_EQ(a.tensors.size(), static_cast<size_t>(3 + 9 * c.num_layers));
  for (const auto& [name, t] : a.tensors) {
    ASSERT_EQ(b.tensors.at(name).data, t.data) << name;
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    EXPECT_EQ(static_cast<int64_t>(t.data.size()), n) << name;
  }
  const auto& w = a.tensors.at("model.layers.1.mlp.down_proj.weight");
  EXPECT_EQ(w.shape, (std::vector<int64_t>{c.hidden_size, c.intermediate_size}));
  double sum = 0, sq = 0;
  for (float v : w.data) sum += v, sq += double(v) * v;
  const double mean = sum / w.data.size(), sd = std::sqrt(sq / w.data.size() - mean * mean);
  EXPECT_NEAR(mean, 0.0, 1e-3);
  EXPECT_NEAR(sd, 0.02, 2e-3);
  EXPECT_NE(other.tensors.at("model.layers.1.mlp.down_proj.weight").data, w.data);
  EXPECT_EQ(synthetic_model("llama-tiny", 7, 1, 1).config.num_layers, 1);
}

TEST(SyntheticModel, UnknownPresetNamesTheKnownOnes) {
  try {
    synthetic_config("gpt-5");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("llama-3.1-8b"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sharq::model
