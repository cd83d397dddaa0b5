// The default real model (scripts/fetch_model.sh; skipped when absent): config, tensor shapes,
// and dequantized + un-permuted values against gguf-py/numpy (make_default_expected.py).
// Not a forward-pass test.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "sharq/model/load.h"

using namespace sharq::model;

TEST(DefaultModel, LoadsAndMatchesGgufPy) {
  const char* env = std::getenv("SHARQ_DEFAULT_MODEL");
  const std::string path =
      env ? env : SHARQ_SOURCE_DIR "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "run scripts/fetch_model.sh";
  std::ifstream in(SHARQ_MODEL_TEST_DATA "/smollm2_expected.json");
  const auto e = nlohmann::json::parse(in);

  const LoadedModel m = load_model(path);
  const ModelConfig& c = m.config;
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.hidden_size, e["config"]["hidden_size"].get<int64_t>());
  EXPECT_EQ(c.intermediate_size, e["config"]["intermediate_size"].get<int64_t>());
  EXPECT_EQ(c.num_layers, e["config"]["num_layers"].get<int64_t>());
  EXPECT_EQ(c.num_heads, e["config"]["num_heads"].get<int64_t>());
  EXPECT_EQ(c.num_kv_heads, e["config"]["num_kv_heads"].get<int64_t>());
  EXPECT_EQ(c.vocab_size, e["config"]["vocab_size"].get<int64_t>());
  EXPECT_EQ(c.max_position_embeddings, e["config"]["max_position_embeddings"].get<int64_t>());
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_FLOAT_EQ(c.rope_theta, e["config"]["rope_theta"].get<float>());
  EXPECT_FLOAT_EQ(c.rms_norm_eps, e["config"]["rms_norm_eps"].get<float>());
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_TRUE(c.rope_scaling.type.empty());
  EXPECT_EQ(m.tensors.size(), 2u + 9u * 30u);
  EXPECT_EQ(m.tokenizer.pre_tokenizer, "smollm");
  EXPECT_FALSE(m.tokenizer.chat_template.empty());

  for (const auto& t : e["tensors"]) {
    const std::string name = t["name"];
    SCOPED_TRACE(name);
    const FloatTensor& ft = m.tensors.at(name);
    EXPECT_EQ(ft.shape, t["shape"].get<std::vector<int64_t>>());
    const auto head = t["row3_head"].get<std::vector<float>>();
    const size_t row = ft.shape.size() == 2 ? 3 * static_cast<size_t>(ft.shape[1]) : 0;
    for (size_t i = 0; i < head.size(); ++i) EXPECT_FLOAT_EQ(ft.data[row + i], head[i]) << i;
    double sum = 0, sumsq = 0;
    for (float x : ft.data) {
      sum += x;
      sumsq += static_cast<double>(x) * x;
    }
    EXPECT_NEAR(sum, t["sum"].get<double>(), 1e-6 * (1 + t["sumsq"].get<double>()));
    EXPECT_NEAR(sumsq, t["sumsq"].get<double>(), 1e-9 * t["sumsq"].get<double>() + 1e-9);
  }
}
