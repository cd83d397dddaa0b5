// Tokenizer conformance: ids equal Hugging Face `tokenizers` (expected_ids.json, written by
// make_expected.py) for the default model and the tiny fixtures; plus edge cases and errors.
// Not a speed test.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sharq/error.h"
#include "sharq/model/load.h"
#include "sharq/tokenizer/tokenizer.h"
#include "tiny_models.h"

using namespace sharq;
namespace fs = std::filesystem;

namespace {

nlohmann::json expected() {
  std::ifstream in(SHARQ_TOKENIZER_TEST_DATA "/expected_ids.json");
  return nlohmann::json::parse(in);
}

std::vector<int32_t> case_ids(const nlohmann::json& e, const std::string& name) {
  for (const auto& c : e["cases"]) {
    if (c["tokenizer"] == name) return c["ids"].get<std::vector<int32_t>>();
  }
  throw std::runtime_error("no case " + name);
}

std::string default_model_path() {
  if (const char* p = std::getenv("SHARQ_DEFAULT_MODEL")) return p;
  return SHARQ_SOURCE_DIR "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
}

uint64_t fnv1a(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// Differences as "position: got vs want" for the first mismatch (readable failures).
std::string first_diff(const std::vector<int32_t>& got, const std::vector<int32_t>& want) {
  for (size_t i = 0; i < std::max(got.size(), want.size()); ++i) {
    const long g = i < got.size() ? got[i] : -1, w = i < want.size() ? want[i] : -1;
    if (g != w)
      return "at " + std::to_string(i) + ": got " + std::to_string(g) + ", want " +
             std::to_string(w);
  }
  return "";
}

}  // namespace

TEST(Tokenizer, TinyFixturesMatchHf) {
  const auto e = expected();
  const std::string text = e["text"], text_nfc = e["text_nfc"];
  for (auto [kind, name] : {std::pair{fixture::TinyKind::llama3, "tiny-llama3"},
                            std::pair{fixture::TinyKind::qwen2, "tiny-qwen2"}}) {
    const Tokenizer t(fixture::make_tiny_model(kind).tokenizer);
    const auto want = case_ids(e, name);
    if (kind == fixture::TinyKind::llama3) {
      const auto got = t.encode(text, false);
      EXPECT_EQ(got, want) << name << " " << first_diff(got, want);
      EXPECT_EQ(t.decode(got), text);
      continue;
    }
    // Qwen2 normalizes to NFC: HF's ids for the text equal those for its NFC form.
    const auto got = t.encode(text_nfc, false);
    EXPECT_EQ(got, want) << name << " " << first_diff(got, want);
    EXPECT_EQ(t.decode(got), text_nfc);
    if (t.decode(t.encode("e\xcc\x81", false)) != "\xc3\xa9") {
      std::fprintf(stderr, "built without utf8proc: NFC input check skipped\n");
      continue;
    }
    const auto got_raw = t.encode(text, false);
    EXPECT_EQ(got_raw, want) << name << " (NFC) " << first_diff(got_raw, want);
  }
}

TEST(Tokenizer, DefaultModelMatchesHf) {
  const std::string path = default_model_path();
  if (!fs::exists(path)) GTEST_SKIP() << "run scripts/fetch_model.sh (" << path << ")";
  const auto e = expected();
  const Tokenizer t(model::load_gguf_tokenizer(path));
  const std::string text = e["text"];
  const auto got = t.encode(text, false);
  const auto want = case_ids(e, "smollm2");
  EXPECT_EQ(got, want) << first_diff(got, want);
  EXPECT_EQ(t.decode(got), text);
  EXPECT_EQ(t.vocab_size(), 49152);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_FALSE(t.add_bos_default());

  const std::string text_path = SHARQ_SOURCE_DIR "/data/devil.txt";
  if (!e.contains("long_text") || !fs::exists(text_path)) return;
  std::ifstream in(text_path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const auto ids = t.encode(ss.str(), false);
  EXPECT_EQ(static_cast<int64_t>(ids.size()), e["long_text"]["count"].get<int64_t>());
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a(ids)));
  EXPECT_EQ(std::string(hex), e["long_text"]["fnv1a"].get<std::string>());
  EXPECT_EQ(t.decode(ids), ss.str());
}

TEST(Tokenizer, EdgeCases) {
  const auto data = fixture::make_tiny_model(fixture::TinyKind::llama3).tokenizer;
  const Tokenizer t(data);
  EXPECT_TRUE(t.encode("", false).empty());
  EXPECT_EQ(t.encode("", true), std::vector<int32_t>{data.bos_id});
  // Every single byte, valid UTF-8 or not, round-trips.
  for (int b = 0; b < 256; ++b) {
    const std::string s(1, static_cast<char>(b));
    EXPECT_EQ(t.decode(t.encode(s, false)), s) << b;
  }
  const std::string junk = "\xff\xfe ok \xc3 \xe2\x82 \xf0\x9f\x98 end";
  EXPECT_EQ(t.decode(t.encode(junk, false)), junk);
  // Special tokens are matched verbatim, leftmost first, even inside words.
  const auto ids = t.encode("a<|end_of_text|>b<|begin_of_text|>", false);
  EXPECT_EQ(ids[1], data.eos_id);
  EXPECT_EQ(ids.back(), data.bos_id);
  EXPECT_THROW(t.decode({-1}), sharq::Error);
  EXPECT_THROW(t.token_bytes(static_cast<int32_t>(t.vocab_size())), sharq::Error);
}

TEST(Tokenizer, BadData) {
  auto data = fixture::make_tiny_model(fixture::TinyKind::qwen2).tokenizer;
  auto bad = data;
  bad.pre_tokenizer = "bert";
  EXPECT_THROW(Tokenizer{bad}, sharq::Error);
  bad = data;
  bad.merges.emplace_back("zzz", "qqq");
  EXPECT_THROW(Tokenizer{bad}, sharq::Error);
  bad = data;
  bad.special_ids.push_back(1 << 30);
  EXPECT_THROW(Tokenizer{bad}, sharq::Error);
  bad = data;
  bad.vocab.clear();
  EXPECT_THROW(Tokenizer{bad}, sharq::Error);
  bad = data;
  bad.bos_id = -1;
  bad.add_bos = true;
  EXPECT_THROW(Tokenizer{bad}, sharq::Error);
  const Tokenizer t(data);
  EXPECT_THROW(t.encode("x", true), sharq::Error);  // qwen2 has no BOS
}
